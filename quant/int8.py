"""int8 variants of a bundle's graphs: every large weight int8, activations quantized per row at run time.

Pipeline per graph (any graph of the bundle: window, step, or any other built the same way):
rewrite GRU ops as MatMuls + Loop (gru_rewrite), then ``quantize_rowwise`` (rowwise.py) —
weights int8 in [-64, 64] per output channel, activations uint8 with one symmetric scale per
row (GRU hidden states: a fixed one), MatMulIntegerToFloat uint8 x int8 (exact on every x86 CPU:
7-bit weights cannot saturate vpmaddubsw's 16-bit pair sums, whether or not the CPU has VNNI),
Gather tables int8 per row.
"""

from __future__ import annotations

from mof.runtime.errors import MofError
from mof.writer.onnx_walk import all_graphs

from .gru_rewrite import gru_to_matmuls
from .rowwise import SCHEME, quantize_rowwise, saturation_risks

LARGE_FLOAT_LIMIT = 65_536          # no float initializer above this many elements may remain


def scheme() -> dict:
    """The int8 scheme's description, as recorded in the manifest (independent of this CPU)."""
    return dict(SCHEME)


def large_float_initializers(model, limit: int = LARGE_FLOAT_LIMIT) -> list[tuple[str, int]]:
    """Float initializers with more than ``limit`` elements, in the graph and every subgraph."""
    import numpy as np
    from onnx import TensorProto
    found = []

    for graph in all_graphs(model.graph):
        for t in graph.initializer:
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            if t.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16) and n > limit:
                found.append((t.name, n))
    return found


def quantize_model(model):
    """fp32 ModelProto -> int8 ModelProto (see module doc). Raises if a large float weight remains
    or if a quantized product could saturate on a CPU without VNNI."""
    model, _ = gru_to_matmuls(model)
    import onnx
    q = onnx.shape_inference.infer_shapes(quantize_rowwise(model))   # shapes let onnxruntime fuse LayerNorms
    left = large_float_initializers(q)
    if left:
        shown = ", ".join(f"{n} ({k} elements)" for n, k in left[:3])
        raise MofError(f"int8 graph still holds {len(left)} large float weights: {shown}")
    risks = saturation_risks(q)
    if risks:
        raise MofError(f"int8 graph could saturate on CPUs without VNNI: {risks[0]}")
    q.producer_name = "mof-quantize (per-row int8, uint8 x int8, 7-bit weights)"
    return q
