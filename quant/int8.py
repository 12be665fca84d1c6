"""int8 variants of a bundle's graphs: every large weight int8, activations quantized at run time.

Pipeline per graph: rewrite GRU ops as MatMuls + Loop (gru_rewrite), then onnxruntime's
``quantize_dynamic`` — weights int8, symmetric, per output channel; MatMuls inside the
Loop bodies included (EnableSubgraph); Gather tables (token and position embeddings)
int8 per tensor. Activations are quantized per tensor at run time (uint8).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from mof.runtime.errors import MofError

from .gru_rewrite import gru_to_matmuls

LARGE_FLOAT_LIMIT = 65_536          # no float initializer above this many elements may remain
OP_TYPES = ["MatMul", "Gather"]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def activation_scheme(flags: set[str] | None = None) -> dict:
    """Choose reduce_range by what this CPU does with u8×s8 products (onnxruntime's quantization docs:
    on AVX2/AVX-512 without VNNI the u8s8 instruction can saturate; 7-bit weights avoid it)."""
    flags = cpu_flags() if flags is None else flags
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)
    reduce_range = not vnni
    return {
        "weights": "int8, symmetric, per output channel (MatMul); per tensor (Gather tables)",
        "activations": "uint8, asymmetric, per tensor, computed at run time (dynamic quantization)",
        "reduce_range": reduce_range,
        "cpu_vnni": vnni,
        "reason": ("VNNI present: full 8-bit weights do not saturate u8s8 dot products" if vnni else
                   "no VNNI: 7-bit weights (reduce_range) so u8s8 products cannot saturate"),
        "tool": "onnxruntime.quantization.quantize_dynamic, GRU ops rewritten as MatMuls + Loop",
    }


def large_float_initializers(model, limit: int = LARGE_FLOAT_LIMIT) -> list[tuple[str, int]]:
    """Float initializers with more than ``limit`` elements, in the graph and every subgraph."""
    import numpy as np
    from onnx import AttributeProto, TensorProto
    found = []

    def walk(graph):
        for t in graph.initializer:
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            if t.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16) and n > limit:
                found.append((t.name, n))
        for node in graph.node:
            for a in node.attribute:
                if a.type == AttributeProto.GRAPH:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)
    walk(model.graph)
    return found


def quantize_model(model, reduce_range: bool):
    """fp32 ModelProto -> int8 ModelProto (see module doc). Raises if a large float weight remains."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, _ = gru_to_matmuls(model)
    with tempfile.TemporaryDirectory(prefix="mof-quant-") as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, src)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)      # quantize_dynamic warns about pre-processing on root
        try:
            quantize_dynamic(src, dst, per_channel=True, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8, op_types_to_quantize=OP_TYPES,
                             extra_options={"EnableSubgraph": True})
        finally:
            root.setLevel(level)
        q = onnx.load(dst)
    left = large_float_initializers(q)
    if left:
        shown = ", ".join(f"{n} ({k} elements)" for n, k in left[:3])
        raise MofError(f"int8 graph still holds {len(left)} large float weights: {shown}")
    q.producer_name = "mof-quantize (onnxruntime quantize_dynamic)"
    return q
