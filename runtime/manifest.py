"""Reading the manifest (docs/bundle-format.md): ``Manifest``, the lookups the runtime makes.
Manifests are written by one module, mof.writer.manifest (the export side).

Every graph entry names its file per precision and lists its inputs and
outputs (name, dtype, shape with named dynamic dims), so a program in another
language can drive the graphs from the manifest alone.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Optional, Sequence

from .chat import DEFAULT_FORM, FORMS
from .config import ModelConfig
from .contract import FP32, GRAPH_CHUNK, GRAPH_DECODE, GRAPH_FILES, GRAPH_STEP
from .decoding import MODES
from .errors import BundleError

DECODING_GRAPHS = (GRAPH_STEP, GRAPH_CHUNK)    # what generation loads beside or instead of the decode
                                              # graph (full.onnx and window.onnx are for analysis)
UNSAID_FORM = DEFAULT_FORM    # export/cli.py's and export/pipeline.py's name for mof-export's default


class Manifest(dict):
    """A parsed manifest.json with the lookups the runtime makes. Still a dict (``m["model"]``);
    ``where`` (the bundle directory) starts every error message."""

    def __init__(self, data: dict, where: str = "bundle"):
        super().__init__(data)
        self.where = where

    @cached_property
    def config(self) -> ModelConfig:
        model = self.get("model")
        if not isinstance(model, dict):
            raise BundleError(f"{self.where}: manifest has no 'model' section")
        return ModelConfig.from_dict(model)

    @property
    def files(self) -> dict:
        files = self.get("files")
        return files if isinstance(files, dict) else {}

    def file_sha256(self, name: str) -> str:
        rec = self.files.get(name)
        return rec.get("sha256", "") if isinstance(rec, dict) else ""

    def graph(self, name: str) -> dict:
        """The entry of graph ``name``; BundleError if the bundle has none."""
        graphs = self.get("graphs")
        entry = graphs.get(name) if isinstance(graphs, dict) else None
        if not isinstance(entry, dict) or not entry:
            raise BundleError(f"{self.where}: bundle has no {name!r} graph; re-export it with this "
                              "version of mof-export")
        return entry

    def precision_record(self, precision: str) -> dict:
        """What the bundle records of a quantized precision: {"quantization", "accuracy"}, under
        the precision's own key ({} if none)."""
        rec = self.get(precision)
        return rec if isinstance(rec, dict) else {}

    def accuracy_warning(self, precision: str) -> Optional[str]:
        """One line when ``precision`` was kept below the accuracy gates (mof-quantize
        --allow-degraded), else None."""
        acc = self.precision_record(precision).get("accuracy") or {}
        if acc.get("passed") is not False:
            return None
        gates, parts = acc.get("gates") or {}, []
        for mode in ("exact", "stream"):
            r = acc.get(mode) or {}
            if isinstance(r.get("top1_agreement"), (int, float)):
                parts.append(f"{mode} top-1 {r['top1_agreement']:.1%}")
        return (f"{precision} was kept below the accuracy gates (top-1 agreement with fp32 >= "
                f"{gates.get('min_top1_agreement', 0.95):.0%}): {', '.join(parts) or 'see the manifest'}")

    def onnxruntime_record(self, precision: str) -> dict:
        """{"measured", "reproduces", ["requires", "why"]}: the onnxruntime ``precision``'s figures
        were measured with and the versions known to reproduce them (runtime/ort_compat.py); built
        from older bundles' records when the manifest has no "onnxruntime" section; {} if unknown."""
        from .ort_compat import precision_record
        return precision_record(self, precision)

    @property
    def network_identity(self) -> str:
        """What a saved state belongs to: the fp32 step graph's sha256 and, in format 2, its
        weights file's (the graph file alone no longer holds the weights)."""
        step = self.file_sha256(GRAPH_FILES[GRAPH_STEP])
        weights = self.weights_file(FP32)
        return f"{step}/{self.file_sha256(weights)}" if weights else step

    @property
    def format_version(self) -> int:
        return self.get("format_version")

    def weights_file(self, precision: str) -> Optional[str]:
        """The file holding the large weights of every ``precision`` decoding graph (their one
        allowed external-data location); None if the manifest names none."""
        weights = self.get("weights")
        name = weights.get(precision) if isinstance(weights, dict) else None
        return name if isinstance(name, str) else None

    def graph_file(self, name: str, precision: str) -> Optional[str]:
        """The file of graph ``name`` in ``precision`` ("fp32"/"int8"/"int4"), None if there is none."""
        graphs = self.get("graphs")
        entry = graphs.get(name) if isinstance(graphs, dict) else None
        file = entry.get(precision) if isinstance(entry, dict) else None
        return file if isinstance(file, str) else None

    def decoding_graphs(self, precision: str = FP32, branches: bool = True) -> tuple[str, ...]:
        """The graphs generation runs in ``precision``: the decode graph (step and chunk in one,
        weights held once), else step and chunk. ``branches=False`` (a provider that must not run
        Ifs, ``Providers.runs_branches``): step and chunk even beside a decode graph."""
        separate = all(self.graph_file(g, precision) for g in DECODING_GRAPHS)
        if self.graph_file(GRAPH_DECODE, precision) and (branches or not separate):
            return (GRAPH_DECODE,)
        return DECODING_GRAPHS

    def has_precision(self, precision: str, graphs: Optional[Sequence[str]] = None) -> bool:
        return all(self.graph_file(g, precision) for g in (graphs or self.decoding_graphs(precision)))

    @property
    def vocab_file(self) -> str:
        vocab = self.get("vocab")
        name = vocab.get("file") if isinstance(vocab, dict) else None
        if not isinstance(name, str) or name not in self.files:
            raise BundleError(f"{self.where}: manifest names no verified vocabulary file")
        return name

    @property
    def recommended_mode(self) -> str:
        """The decoding mode the export measured as better for this model."""
        return self._choice("recommended_mode", MODES)

    @property
    def recommended_refill_every(self) -> int:
        """R of the refill rule the export recommends (not capped by the window: mof.runtime.decoding's
        ``recommended_refill_every`` is)."""
        r = self.get("recommended_refill_every")
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise BundleError(f"{self.where}: manifest recommended_refill_every {r!r} is not an integer >= 1")
        return r

    @property
    def form(self) -> str:
        """The prompt form the model was trained on (chat, instruct, pretrain or raw)."""
        return self._choice("form", FORMS)

    def _choice(self, key: str, allowed: Sequence[str]) -> str:
        value = self.get(key)
        if value not in allowed:
            raise BundleError(f"{self.where}: manifest {key} {value!r} is not one of {', '.join(allowed)}")
        return value


def model_config(manifest: dict[str, Any]) -> ModelConfig:
    """The model's hyper-parameters from a parsed manifest (a Manifest or a plain dict)."""
    return (manifest if isinstance(manifest, Manifest) else Manifest(manifest)).config
