"""int4 variants of a bundle's graphs: every MatMul weight 4-bit blockwise (MatMulNBits), Gather tables int8.

Pipeline per graph (the graphs int8 quantizes: step, chunk and decode, runtime/contract.py QUANTIZED_GRAPHS):
rewrite GRU ops as MatMuls + Loop (gru_rewrite, so the recurrent weights inside the Loop bodies
are MatMuls too), then every MatMul whose weight B [K, N] is a float initializer of the graph or
of an enclosing one becomes onnxruntime's ``com.microsoft.MatMulNBits`` (bits 4, blocks of
``block_size`` along K, one float scale per block and column, a 4-bit zero point per block when
asymmetric), with the weight packed by onnxruntime's own C++ routine ``quantize_matmul_4bits`` —
the node layout ``onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`` writes
(QOperator format). That class itself cannot be imported here: its module needs the onnx-ir
package, which is no dependency of mof (benchmarks/int4_blocks.py checks, when onnx-ir is
importable, that both give the same numbers). Gather tables (token and position embeddings) keep
rowwise.py's int8 per row: int4 tables cost more accuracy than the bytes they save are worth, and
tables cost no MatMul time.

The defaults (BLOCK_SIZE, ACCURACY_LEVEL, SYMMETRIC) were chosen with benchmarks/int4_blocks.py:
the block size and symmetry with the lowest mean KL and perplexity change against fp32, and
accuracy_level 4 for its speed at the same accuracy; the figures behind each, and the demo's miss
of the top-1 gate (measure/gates.py) at every block size: docs/quantization.md, "int4".

CPU dependence: unlike int8 (rowwise.py: the same numbers on every x86 CPU), accuracy_level 4 runs
int8 dot products whose kernels differ by CPU, so int4 logits do too, and on some CPUs a row's
logits depend on its batch (docs/quantization.md, "int4"). Weights stay ordinary initializers: whoever
writes the bundle decides where they are stored.
"""

from __future__ import annotations

import numpy as np

from mof.runtime.errors import MofError
from mof.writer.onnx_walk import node_graphs, prune_initializers

from .gru_rewrite import gru_to_matmuls
from .int8 import large_float_initializers
from .rowwise import quantize_rowwise

BLOCK_SIZE = 32            # weights per scale along K (16, 32, 64, 128, ...: a power of 2 >= 16)
ACCURACY_LEVEL = 4         # MatMulNBits compute: 0 = unset (fp32), 4 = int8 activations (per block)
SYMMETRIC = False          # True: int4 in [-8, 7], no zero points; False: uint4 with a zero point per block

SCHEME_NAME = "matmulnbits-int4"


def scheme(block_size: int = BLOCK_SIZE, accuracy_level: int = ACCURACY_LEVEL,
           symmetric: bool = SYMMETRIC) -> dict:
    """The int4 scheme's description, for a manifest or a report."""
    return {
        "name": SCHEME_NAME,
        "weights": f"int4 blockwise along K, block {block_size}, one float scale per block and column"
                   + ("" if symmetric else ", a 4-bit zero point per block") + " (MatMul); int8 per row "
                   "(Gather tables)",
        "kernel": f"com.microsoft.MatMulNBits accuracy_level {accuracy_level} "
                  + ("(int8 activations per block, CPU-specific int8 dot products)" if accuracy_level == 4
                     else "(float compute)"),
        "cpu_dependent": accuracy_level == 4,               # int8 kernels differ by CPU (AVX2, AVX-512 VNNI)
        "tool": "onnxruntime quantize_matmul_4bits, GRU ops rewritten as MatMuls + Loop",
    }


def _check_options(block_size: int, accuracy_level: int) -> None:
    if block_size < 16 or block_size & (block_size - 1):
        raise MofError(f"int4 block size must be a power of 2 of at least 16, got {block_size}")
    if accuracy_level not in (0, 1, 2, 3, 4):
        raise MofError(f"MatMulNBits accuracy_level must be 0 to 4, got {accuracy_level}")


def pack_weight(w: np.ndarray, block_size: int, symmetric: bool):
    """[K, N] float -> (packed uint8 [N, K/block, block/2], scales float32 [N, K/block],
    zero points uint8 [N, ceil(K/block / 2)]), by onnxruntime's own packing routine (K padded
    with zeros to whole blocks)."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits
    w = np.ascontiguousarray(w, dtype=np.float32)
    K, N = w.shape
    blocks = (K + block_size - 1) // block_size
    if blocks * block_size != K:
        w = np.pad(w, ((0, blocks * block_size - K), (0, 0)))
    packed = np.zeros((N, blocks, block_size // 2), np.uint8)
    scales = np.zeros((N, blocks), np.float32)
    zero_points = np.zeros((N, (blocks + 1) // 2), np.uint8)
    quantize_matmul_4bits(packed, w, scales, zero_points, block_size, N, K, symmetric)
    return packed, scales, zero_points


def quantize_matmuls_nbits(model, block_size: int = BLOCK_SIZE, accuracy_level: int = ACCURACY_LEVEL,
                           symmetric: bool = SYMMETRIC, min_elements: int = 1) -> dict[str, list[str]]:
    """Replace, in place, every MatMul of ``model`` (main graph and Loop/If/Scan bodies) whose
    weight is a 2-D float initializer in scope by a MatMulNBits node. Returns {fp32 weight name:
    [packed, scales(, zero points)] initializer names} (a weight two MatMuls share is packed once)."""
    from onnx import TensorProto, helper, numpy_helper
    _check_options(block_size, accuracy_level)
    packed_names: dict[str, list[str]] = {}
    owners: dict[str, object] = {}                  # initializer name -> the graph holding it

    def pack(init) -> list[str]:
        if init.name not in packed_names:
            q, s, z = pack_weight(numpy_helper.to_array(init), block_size, symmetric)
            names = [init.name + "_Q4", init.name + "_scales"] + ([] if symmetric else [init.name + "_zero_points"])
            owners[init.name].initializer.extend(
                numpy_helper.from_array(a, n) for a, n in zip((q, s, z), names))
            packed_names[init.name] = names
        return packed_names[init.name]

    def walk(graph, scope: dict):
        scope = dict(scope)
        for t in graph.initializer:
            scope[t.name] = t
            owners[t.name] = graph
        new_nodes = []
        for node in graph.node:
            for g in node_graphs(node):                    # Loop / If / Scan bodies
                walk(g, scope)
            init = scope.get(node.input[1]) if node.op_type == "MatMul" else None
            if (init is None or init.data_type != TensorProto.FLOAT or len(init.dims) != 2
                    or int(np.prod(init.dims)) < min_elements):
                new_nodes.append(node)
                continue
            K, N = (int(d) for d in init.dims)
            attrs = {"K": K, "N": N, "bits": 4, "block_size": block_size}
            if accuracy_level:                              # as MatMulNBitsQuantizer: 0 is left unset
                attrs["accuracy_level"] = accuracy_level
            new_nodes.append(helper.make_node("MatMulNBits", [node.input[0], *pack(init)], list(node.output),
                                              name=(node.name + "_Q4") if node.name else "",
                                              domain="com.microsoft", **attrs))
        del graph.node[:]
        graph.node.extend(new_nodes)

    walk(model.graph, {})
    prune_initializers(model.graph, packed_names)      # the float weights no node reads any more
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return packed_names


def quantize_model_int4(model, block_size: int = BLOCK_SIZE, accuracy_level: int = ACCURACY_LEVEL,
                        symmetric: bool = SYMMETRIC):
    """fp32 ModelProto (a bundle's step or chunk graph) -> int4 ModelProto (see module doc).
    Raises MofError if no MatMul weight was found or a large float weight remains (MatMulNBits'
    float scales, 1/block_size of their weight, excepted: at full size some exceed the limit)."""
    import onnx
    _check_options(block_size, accuracy_level)
    model, _ = gru_to_matmuls(model)
    model = onnx.shape_inference.infer_shapes(model)    # before the contrib ops: shapes for every float op
    packed = quantize_matmuls_nbits(model, block_size, accuracy_level, symmetric)
    if not packed:
        raise MofError("no MatMul with a constant weight found to quantize")
    model = quantize_rowwise(model, matmuls=False)      # Gather tables: int8 per row
    scales = {names[1] for names in packed.values()}    # float by design: one per block of `block_size` weights
    left = [(n, k) for n, k in large_float_initializers(model) if n not in scales]
    if left:
        shown = ", ".join(f"{n} ({k} elements)" for n, k in left[:3])
        raise MofError(f"int4 graph still holds {len(left)} large float weights: {shown}")
    model.producer_name = f"mof-quantize (int4 MatMulNBits block {block_size}, accuracy_level {accuracy_level})"
    return model
