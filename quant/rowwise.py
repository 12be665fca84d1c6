"""Per-row int8 in plain ONNX: the same numbers on every x86 CPU, each row of a batch on its own.

Every MatMul whose weight B [K, N] is a float initializer (in the graph or, for the GRU Loop
bodies, in an enclosing one) becomes

    x_scale = ReduceMax(Abs(x), last axis) * (1/127)                      # one scale per row
    x_u8    = QuantizeLinear(x / x_scale, 1.0, 128)                       # uint8 in [1, 255]
    y       = MatMulIntegerToFloat(x_u8, W_s8, 1.0, w_scale, 128) * x_scale

with W_s8 = round(W / w_scale) in [-64, 64], w_scale = max|W[:, n]| / 64, one per output column
(7-bit weights), and MatMulIntegerToFloat onnxruntime's fused product: the exact int32 sum,
converted to float and multiplied by w_scale in the kernel's epilogue (no int32 tensor written,
no separate DequantizeLinear). A GRU's recurrent product h R (marked by the GRU rewrite,
``UNIT_INPUT``) reads a hidden state that is never outside [-1, 1] (a convex mix of tanh outputs
from a zero state), so it has a fixed scale: x_u8 = QuantizeLinear(h * 127, 1.0, 128), and the
product is MatMulIntegerToFloat(x_u8, W_s8, 1.0, w_scale / 127, 128) — three ops in the Loop body
instead of eight. Gather tables (token and position embeddings) keep one int8 row and one scale
per entry.

Why no x86 CPU can compute anything else: uint8 activations x int8 weights run MLAS's U8S8
kernels — vpmaddubsw on AVX2 and AVX-512BW without VNNI, which adds two u8 x s8 products in a
saturating int16; vpdpbusd with VNNI; AMX — and with |w| <= 64 a pair is at most
2 * 255 * 64 = 32640 < 32767, so nothing saturates and every kernel returns the exact int32 sum
(uint8 x uint8, the scheme before, was exact too, at half the speed: MLAS widens both to 16 bits).
x / x_scale is an IEEE division and QuantizeLinear's scale is 1.0, so no kernel's choice of a
reciprocal can change a bit; every other step is per element, per row or per column, so a row's
result does not depend on which rows share its batch.
"""

from __future__ import annotations

import numpy as np

from mof.runtime.errors import MofError
from mof.writer.onnx_builder import UNIT_INPUT
from mof.writer.onnx_walk import node_graphs, prune_initializers

SCHEME = {
    "name": "rowwise-u8s8",
    "weights": "int8 range [-64, 64] per output column (7 bits: no u8 x s8 pair can saturate); "
               "int8 per row (Gather tables)",
    "activations": "uint8 with zero point 128, symmetric, one scale per row (last axis), computed at "
                   "run time in the graph; GRU hidden states (always in [-1, 1]) with the fixed scale 1/127",
    "kernel": "MatMulIntegerToFloat uint8 x int8 (MLAS U8S8: exact int32 sums on every x86 CPU, "
              "VNNI or not)",
    "rows_independent": True,
    "tool": "mof.quant.rowwise, GRU ops rewritten as MatMuls + Loop",
}

ZP = 128                # activations: uint8 = round(x / x_scale) + 128
W_MAX = 64              # weights: int8 in [-W_MAX, W_MAX]; 2 * 255 * W_MAX <= 32767
MS_DOMAIN = "com.microsoft"


def _opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 17


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] float -> (int8 [K, N] = round(w / s) in [-64, 64], scale s [N] float32)."""
    amax = np.abs(w).max(axis=0).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(W_MAX), np.float32(1)).astype(np.float32)
    return np.clip(np.rint(w / scale), -W_MAX, W_MAX).astype(np.int8), scale


def quantize_table(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[V, E] float -> (int8 [V, E], scale [V, 1] float32): one scale per row (per token / position)."""
    amax = np.abs(t).max(axis=1, keepdims=True).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    return np.clip(np.rint(t / scale), -127, 127).astype(np.int8), scale


def quantize_rowwise(model, min_elements: int = 1, matmuls: bool = True):
    """Rewrite ``model`` (an fp32 ModelProto whose GRUs are already MatMuls) in place; returns it.
    ``matmuls=False``: the Gather tables only (int4.py puts the MatMul weights in MatMulNBits)."""
    from onnx import TensorProto, helper, numpy_helper

    main = model.graph
    opset = _opset(model)
    floats = (TensorProto.FLOAT,)
    consts = {}

    def const(name, value):
        if name not in consts:
            main.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            consts[name] = name
        return name

    inv127 = lambda: const("mofq/inv127", np.array(1 / 127, np.float32))
    one = lambda: const("mofq/one", np.array(1, np.float32))
    zp = lambda: const("mofq/zp128", np.array(ZP, np.uint8))
    axes = lambda: const("mofq/axes_last", np.array([-1], np.int64))
    c127 = lambda: const("mofq/c127", np.array(127, np.float32))

    done_weights: dict[str, tuple[str, str]] = {}
    done_tables: dict[str, tuple[str, str]] = {}
    replaced: set[str] = set()
    counter = [0]

    def uid(hint):
        counter[0] += 1
        return f"mofq/{hint}_{counter[0]}"

    scales: dict[str, np.ndarray] = {}      # scale initializer name -> its values

    def stored(done, quantize, suffixes, name, arr):
        """The (quantized, scale) initializers replacing ``name``, added once."""
        if name not in done:
            q, s = quantize(arr)
            qn, sn = name + suffixes[0], name + suffixes[1]
            main.initializer.extend([numpy_helper.from_array(q, qn), numpy_helper.from_array(s, sn)])
            done[name] = (qn, sn)
            scales[sn] = s
            replaced.add(name)
        return done[name]

    def weight(name, arr):
        return stored(done_weights, quantize_weight, ("/s8", "/scale"), name, arr)

    def unit_scale(ws):
        """w_scale / 127 beside w_scale: the product's scale when x has the fixed scale 1/127."""
        name = ws + "/127"
        if name not in consts:
            const(name, (scales[ws] / np.float32(127)).astype(np.float32))
        return name

    def table(name, arr):
        return stored(done_tables, quantize_table, ("/i8", "/row_scale"), name, arr)

    def walk(graph, scope: dict):
        scope = dict(scope)
        scope.update({t.name: t for t in graph.initializer})
        quantized_inputs: dict[str, tuple[str, str]] = {}
        new_nodes = []
        for node in graph.node:
            for g in node_graphs(node):                    # Loop / If / Scan bodies
                walk(g, scope)
            if node.op_type == "Gather":
                init = scope.get(node.input[0])                 # the table; indices may be constant too
                axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
                if (init is not None and init.data_type in floats and len(init.dims) == 2 and axis == 0
                        and int(np.prod(init.dims)) >= min_elements):
                    qn, sn = table(init.name, numpy_helper.to_array(init))
                    rows = helper.make_node("Gather", [qn, node.input[1]], [uid("rows_i8")], axis=0)
                    scales = helper.make_node("Gather", [sn, node.input[1]], [uid("rows_scale")], axis=0)
                    as_f = helper.make_node("Cast", [rows.output[0]], [uid("rows_f")], to=TensorProto.FLOAT)
                    new_nodes += [rows, scales, as_f,
                                  helper.make_node("Mul", [as_f.output[0], scales.output[0]], list(node.output))]
                    continue
                new_nodes.append(node)
                continue
            init = scope.get(node.input[1]) if node.op_type == "MatMul" and matmuls else None
            if (init is None or init.data_type not in floats
                    or len(init.dims) != 2 or int(np.prod(init.dims)) < min_elements):
                new_nodes.append(node)
                continue
            wq, ws = weight(init.name, numpy_helper.to_array(init))
            x = node.input[0]
            if node.doc_string == UNIT_INPUT:
                # a GRU hidden state, never outside [-1, 1]: the fixed scale 1/127 (x * 127 is one
                # IEEE multiply; QuantizeLinear's scale 1.0 leaves nothing to a kernel's choice)
                if (x, "unit") not in quantized_inputs:
                    h127, xq = uid("h_127"), uid("h_u8")
                    new_nodes += [helper.make_node("Mul", [x, c127()], [h127]),
                                  helper.make_node("QuantizeLinear", [h127, one(), zp()], [xq])]
                    quantized_inputs[(x, "unit")] = (xq, None)
                xq, _ = quantized_inputs[(x, "unit")]
                new_nodes.append(helper.make_node("MatMulIntegerToFloat", [xq, wq, one(), unit_scale(ws), zp()],
                                                  list(node.output), domain=MS_DOMAIN))
                continue
            if x not in quantized_inputs:
                absx, amax, scale, unit, xq = uid("abs"), uid("amax"), uid("x_scale"), uid("x_div"), uid("x_u8")
                nodes = [helper.make_node("Abs", [x], [absx])]
                if opset >= 18:
                    nodes.append(helper.make_node("ReduceMax", [absx, axes()], [amax], keepdims=1))
                else:
                    nodes.append(helper.make_node("ReduceMax", [absx], [amax], axes=[-1], keepdims=1))
                # x / x_scale in [-127, 127] (an IEEE division, the same whichever SIMD lane or tail
                # loop computes it); QuantizeLinear with scale 1: round-half-even + 128, saturated to
                # [0, 255]. An all-zero row makes 0/0 = NaN and an arbitrary x_u8, but its output is
                # multiplied by x_scale = 0 below, so it is exactly 0 whatever the kernel made of the NaN.
                nodes += [helper.make_node("Mul", [amax, inv127()], [scale]),
                          helper.make_node("Div", [x, scale], [unit]),
                          helper.make_node("QuantizeLinear", [unit, one(), zp()], [xq])]
                new_nodes += nodes
                quantized_inputs[x] = (xq, scale)
            xq, scale = quantized_inputs[x]
            cols = uid("acc_f")
            # the exact int32 sum * w_scale per column (in the kernel), then * x_scale per row
            new_nodes += [helper.make_node("MatMulIntegerToFloat", [xq, wq, one(), ws, zp()], [cols],
                                           domain=MS_DOMAIN),
                          helper.make_node("Mul", [cols, scale], list(node.output))]
        del graph.node[:]
        graph.node.extend(new_nodes)

    walk(main, {})
    if done_weights and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    # the float weights replaced, and the per-column scales no product reads (a GRU's recurrent
    # weight uses its w_scale / 127 twin, unit_scale), go
    prune_initializers(main, replaced | set(scales))
    if matmuls and not done_weights:
        raise MofError("no MatMul with a constant weight found to quantize")
    return model


def saturation_risks(model) -> list[str]:
    """MatMulInteger / ConvInteger / DynamicQuantizeMatMul nodes whose int8 products can saturate a
    16-bit pair sum on x86 CPUs without VNNI (vpmaddubsw: uint8 activations x int8 weights with
    |w| > 64, or int8 activations). Empty for graphs made by ``quantize_rowwise``."""
    from onnx import TensorProto, numpy_helper
    risks = []

    def walk(graph, scope):
        scope = dict(scope)
        scope.update({t.name: t for t in graph.initializer})
        for node in graph.node:
            for g in node_graphs(node):
                walk(g, scope)
            if node.op_type not in ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
                                    "MatMulIntegerToFloat", "QLinearMatMul"):
                continue
            w = scope.get(node.input[1] if node.op_type != "QLinearMatMul" else node.input[3])
            if w is None:
                risks.append(f"{node.name or node.output[0]}: weight is not a constant")
                continue
            if w.data_type == TensorProto.UINT8 and node.op_type == "MatMulInteger":
                continue                                   # u8 x u8: 16-bit multiply-adds, exact
            if w.data_type == TensorProto.INT8:
                peak = int(np.abs(numpy_helper.to_array(w).astype(np.int16)).max())
                if peak <= W_MAX:
                    continue                               # 2 * 255 * 64 = 32640 < 32767
                risks.append(f"{node.name or node.output[0]}: u8 x s8 with |w| up to {peak} (> {W_MAX})")
                continue
            risks.append(f"{node.name or node.output[0]}: weight type {w.data_type}")
    walk(model.graph, {})
    return risks
