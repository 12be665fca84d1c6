"""mof.runtime: load a bundle and run it with onnxruntime. Imports numpy and onnxruntime only."""

from .bundle import BundleWriter, read_manifest, verify_bundle
from .config import ModelConfig
from .errors import BundleError, MofError
from .vocab import Vocabulary

__all__ = ["BundleWriter", "BundleError", "ModelConfig", "MofError", "Vocabulary",
           "read_manifest", "verify_bundle"]
