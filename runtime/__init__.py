"""mof.runtime: load a bundle and run it with onnxruntime. Imports numpy and onnxruntime only.

    from mof.runtime import Model, Generator, SamplingConfig
    model = Model.load("t6.mof")
    for piece in Generator(model, "床前明月光，", SamplingConfig(seed=0), mode="stream"):
        print(piece, end="", flush=True)
"""

from ._onnxruntime import require_onnxruntime

require_onnxruntime()    # a clear message, not a bare ModuleNotFoundError, when no flavour is installed

from .bundle import read_manifest, verify_bundle
from .bundle_default import DEFAULT_BUNDLE
from .config import ModelConfig
from .errors import BundleError, MofError
from .generate import GenerationStats, Generator, generate
from .model import Model
from .sampling import Sampler, SamplingConfig
from .state import State
from .vocab import Vocabulary

__all__ = ["DEFAULT_BUNDLE", "BundleError", "GenerationStats", "Generator", "Model", "ModelConfig",
           "MofError", "Sampler", "SamplingConfig", "State", "Vocabulary", "generate",
           "read_manifest", "verify_bundle"]
