"""The manifest schema (docs/bundle-format.md): built here, read here.

Every graph entry names its file per precision and lists its inputs and
outputs (name, dtype, shape with named dynamic dims), so a program in another
language can drive the graphs from the manifest alone.
"""

from __future__ import annotations

from typing import Any, Optional

from .config import ModelConfig
from .contract import (FORMAT, FORMAT_VERSION, FP32, GRAPH_CHUNK, GRAPH_FILES, GRAPH_FULL, GRAPH_STEP,
                       GRAPH_WINDOW, INPUT_IDS, LOGITS, POSITION, VOCAB_FILE)
from .errors import BundleError
from .state import state_io, state_shapes


def _tensor(name: str, dtype: str, shape: list) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def graph_entry(graph: str, config: ModelConfig) -> dict[str, Any]:
    """The manifest entry of one graph: its fp32 file and its I/O contract."""
    V = config.vocab_size
    if graph == GRAPH_STEP:
        io = state_io(config)
        return {
            FP32: GRAPH_FILES[graph],
            "inputs": [_tensor(INPUT_IDS, "int32", ["batch", "chunk"]),
                       _tensor(POSITION, "int64", ["batch"])]
                      + [_tensor(i, "float32", shape) for i, _, shape in io],
            "outputs": [_tensor(LOGITS, "float32", ["batch", V])]
                       + [_tensor(o, "float32", shape) for _, o, shape in io],
        }
    if graph == GRAPH_CHUNK:
        return {
            FP32: GRAPH_FILES[graph],
            "inputs": [_tensor(INPUT_IDS, "int32", ["batch", "seq"])],
            "outputs": [_tensor(LOGITS, "float32", ["batch", V])]
                       + [_tensor(o, "float32", shape) for _, o, shape in state_io(config)],
        }
    out_shape = {GRAPH_FULL: ["batch", "seq", V], GRAPH_WINDOW: ["batch", V]}[graph]
    return {
        FP32: GRAPH_FILES[graph],
        "inputs": [_tensor(INPUT_IDS, "int32", ["batch", "seq"])],
        "outputs": [_tensor(LOGITS, "float32", out_shape)],
    }


def state_section(config: ModelConfig) -> dict[str, Any]:
    """How big a sequence's recurrent state is, and which graph tensors carry it."""
    floats = 0
    fields = []
    for (name_in, name_out, shape), field in zip(state_io(config), state_shapes(config)):
        n = 1
        for d in shape:
            n *= 1 if d == "batch" else d
        floats += n
        fields.append({"field": field, "input": name_in, "output": name_out, "dtype": "float32",
                       "shape": shape})
    return {"fields": fields, "position_input": POSITION, "floats_per_sequence": floats,
            "bytes_per_sequence": 4 * floats}


def make_manifest(config: ModelConfig, *, model_type: Optional[str], vocab: dict[str, Any],
                  validation: dict[str, Any], producer: dict[str, str],
                  source: dict[str, Any],
                  graphs: tuple[str, ...] = (GRAPH_FULL, GRAPH_WINDOW, GRAPH_STEP),
                  stream: dict[str, Any] | None = None) -> dict[str, Any]:
    """A complete manifest except ``files`` (the BundleWriter adds hashes at commit)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"model_type": model_type, **config.to_dict()},
        "vocab": {"file": VOCAB_FILE, **vocab},
        "graphs": {g: graph_entry(g, config) for g in graphs},
        "state": state_section(config),
        "validation": validation,
        "stream": stream or {},
        "producer": producer,
        "source": source,
    }


def model_config(manifest: dict[str, Any]) -> ModelConfig:
    model = manifest.get("model")
    if not isinstance(model, dict):
        raise BundleError("manifest has no 'model' section")
    return ModelConfig.from_dict(model)
