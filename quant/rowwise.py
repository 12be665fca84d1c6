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
(the other schemes measured, and why this one: docs/quantization.md, "int8"). x / x_scale is an
IEEE division and QuantizeLinear's scale is 1.0, so no kernel's choice of a reciprocal can change
a bit; every other step is per element, per row or per column, so a row's
result does not depend on which rows share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from mof.runtime.errors import MofError
from mof.writer.onnx_builder import UNIT_INPUT
from mof.writer.onnx_walk import all_graphs, node_graphs, prune_initializers

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


@dataclass(frozen=True, eq=False)       # eq=False: an array field has no truth value to compare by
class Quantized:
    """A float initializer's integer replacement, added to the main graph once and read by every
    node that read the float one (in the main graph or a Loop body)."""
    values: str                 # int8 initializer: W_s8 [K, N] (MatMul) or the table [V, E] (Gather)
    scale: str                  # float32 initializer: w_scale [N], one per column, or [V, 1], one per row
    scale_values: np.ndarray    # the scale's values (a GRU's recurrent product reads w_scale / 127)


@dataclass(frozen=True)
class QuantizedInput:
    """An activation quantized once for every MatMul of its graph that reads it."""
    x_u8: str                   # uint8 [..., K] = round(x / x_scale) + 128
    x_scale: Optional[str]      # float [..., 1], one per row; None: the fixed scale 1/127 (UNIT_INPUT)


def quantize_rowwise(model, min_elements: int = 1, matmuls: bool = True):
    """Rewrite ``model`` (an fp32 ModelProto whose GRUs are already MatMuls) in place; returns it.
    ``matmuls=False``: the Gather tables only (int4.py puts the MatMul weights in MatMulNBits)."""
    from onnx import helper
    rewrite = _RowwiseRewrite(model, min_elements, matmuls)
    rewrite.walk(model.graph, {})
    if rewrite.weights and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    # the float weights replaced, and the per-column scales no product reads (a GRU's recurrent
    # weight uses its w_scale / 127 twin, unit_scale), go
    prune_initializers(model.graph, rewrite.replaced())
    if matmuls and not rewrite.weights:
        raise MofError("no MatMul with a constant weight found to quantize")
    return model


class _RowwiseRewrite:
    """One model's rewrite: every new initializer goes to the main graph, each added once. New
    nodes and their outputs are named by the path of the node they replace, as the builder names
    nodes (``/lm_head/MatMul`` -> ``/lm_head/quantize/Abs``, ``/lm_head/MatMulIntegerToFloat``)."""

    def __init__(self, model, min_elements: int, matmuls: bool):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.main = model.graph
        self.opset = _opset(model)
        self.min_elements = min_elements      # smaller weights and tables stay float
        self.matmuls = matmuls                # False: Gather tables only
        self.consts: set[str] = set()         # names of the constants added (/quant/one, w_scale / 127, ...)
        self.weights: dict[str, Quantized] = {}     # float MatMul weight name -> its int8 replacement
        self.tables: dict[str, Quantized] = {}      # float Gather table name -> its int8 replacement
        self.names: set[str] = {n.name for g in all_graphs(model.graph) for n in g.node}   # taken paths

    def const(self, name: str, value) -> str:
        if name not in self.consts:
            self.main.initializer.append(self.numpy_helper.from_array(np.asarray(value), name))
            self.consts.add(name)
        return name

    @staticmethod
    def base(node) -> str:
        """Where the nodes replacing ``node`` go: its path less the op (``/lm_head/MatMul`` ->
        ``/lm_head``); a node without a name: ``/quant``."""
        suffix = "/" + node.op_type
        if not node.name:
            return "/quant"
        return node.name[:-len(suffix)] if node.name.endswith(suffix) else node.name

    def path(self, base: str, hint: str) -> str:
        """``base/hint``, made unique (``_1``, ``_2``, ... when taken)."""
        name, k = f"{base}/{hint}", 0
        while name in self.names:
            k += 1
            name = f"{base}/{hint}_{k}"
        self.names.add(name)
        return name

    def make(self, base: str, op_type: str, inputs: list, outputs: list, hint: str = "", **attrs):
        """A node named ``base/hint/op_type`` (``base/op_type`` without a hint)."""
        node_path = self.path(base, f"{hint}/{op_type}" if hint else op_type)
        return self.helper.make_node(op_type, inputs, outputs, name=node_path, **attrs)

    def replaced(self) -> set[str]:
        """The float initializers replaced and their per-column scales: pruned when unread."""
        done = list(self.weights.items()) + list(self.tables.items())
        return {name for name, _ in done} | {q.scale for _, q in done}

    def _eligible(self, init) -> bool:
        from onnx import TensorProto
        return (init is not None and init.data_type == TensorProto.FLOAT and len(init.dims) == 2
                and int(np.prod(init.dims)) >= self.min_elements)

    def _stored(self, done: dict, quantize, suffixes: tuple[str, str], init) -> Quantized:
        if init.name not in done:
            values, scale = quantize(self.numpy_helper.to_array(init))
            q = Quantized(init.name + suffixes[0], init.name + suffixes[1], scale)
            self.main.initializer.extend([self.numpy_helper.from_array(values, q.values),
                                          self.numpy_helper.from_array(scale, q.scale)])
            done[init.name] = q
        return done[init.name]

    def weight(self, init) -> Quantized:
        return self._stored(self.weights, quantize_weight, ("/s8", "/scale"), init)

    def table(self, init) -> Quantized:
        return self._stored(self.tables, quantize_table, ("/i8", "/row_scale"), init)

    def unit_scale(self, w: Quantized) -> str:
        """w_scale / 127 beside w_scale: the product's scale when x has the fixed scale 1/127."""
        return self.const(w.scale + "/127", (w.scale_values / np.float32(127)).astype(np.float32))

    def walk(self, graph, scope: dict) -> None:
        """Rewrite ``graph`` and the graphs its nodes hold; ``scope``: the enclosing graphs'
        initializers by name (a Loop body reads its weights from the graph around it)."""
        scope = {**scope, **{t.name: t for t in graph.initializer}}
        inputs: dict[tuple[str, bool], QuantizedInput] = {}     # (x, fixed scale) -> x quantized
        new_nodes = []
        for node in graph.node:
            for g in node_graphs(node):                    # Loop / If / Scan bodies
                self.walk(g, scope)
            new_nodes += self._rewrite(node, scope, inputs)
        del graph.node[:]
        graph.node.extend(new_nodes)

    def _rewrite(self, node, scope: dict, inputs: dict) -> list:
        """The nodes replacing ``node``: itself when its weight or table is not quantized."""
        if node.op_type == "Gather":
            init = scope.get(node.input[0])                 # the table; indices may be constant too
            axis = next((self.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
            return self._gather(node, self.table(init)) if self._eligible(init) and axis == 0 else [node]
        init = scope.get(node.input[1]) if node.op_type == "MatMul" and self.matmuls else None
        if not self._eligible(init):
            return [node]
        w = self.weight(init)
        if node.doc_string == UNIT_INPUT:
            return self._unit_matmul(node, w, inputs)
        return self._matmul(node, w, inputs)

    def _gather(self, node, table: Quantized) -> list:
        """Gather the int8 rows and their scales, then rows * scale."""
        from onnx import TensorProto
        at = self.base(node)
        rows = self.make(at, "Gather", [table.values, node.input[1]], [self.path(at, "rows_i8")], "rows", axis=0)
        scales = self.make(at, "Gather", [table.scale, node.input[1]], [self.path(at, "rows_scale")], "scales",
                           axis=0)
        as_f = self.make(at, "Cast", [rows.output[0]], [self.path(at, "rows_f")], "rows", to=TensorProto.FLOAT)
        return [rows, scales, as_f, self.make(at, "Mul", [as_f.output[0], scales.output[0]], list(node.output))]

    def _unit_matmul(self, node, w: Quantized, inputs: dict) -> list:
        """A GRU hidden state, never outside [-1, 1]: the fixed scale 1/127 (x * 127 is one IEEE
        multiply; QuantizeLinear's scale 1.0 leaves nothing to a kernel's choice)."""
        at, x, nodes = self.base(node), node.input[0], []
        if (x, True) not in inputs:
            h127, xq = self.path(at, "h_127"), self.path(at, "h_u8")
            nodes += [self.make(at, "Mul", [x, self.const_c127()], [h127], "quantize"),
                      self.make(at, "QuantizeLinear", [h127, self.const_one(), self.const_zp()], [xq], "quantize")]
            inputs[(x, True)] = QuantizedInput(xq, None)
        xq = inputs[(x, True)].x_u8
        return nodes + [self.make(at, "MatMulIntegerToFloat", [xq, w.values, self.const_one(), self.unit_scale(w),
                                                               self.const_zp()], list(node.output), domain=MS_DOMAIN)]

    def _matmul(self, node, w: Quantized, inputs: dict) -> list:
        """x quantized per row (once per graph), the exact int32 sum * w_scale per column (in the
        kernel), then * x_scale per row."""
        at, x, nodes = self.base(node), node.input[0], []
        if (x, False) not in inputs:
            quantize, inputs[(x, False)] = self._quantize_rows(x, at)
            nodes += quantize
        q = inputs[(x, False)]
        cols = self.path(at, "acc_f")
        return nodes + [self.make(at, "MatMulIntegerToFloat", [q.x_u8, w.values, self.const_one(), w.scale,
                                                               self.const_zp()], [cols], domain=MS_DOMAIN),
                        self.make(at, "Mul", [cols, q.x_scale], list(node.output), "x_scale")]

    def _quantize_rows(self, x: str, at: str) -> tuple[list, QuantizedInput]:
        """x_scale = ReduceMax(|x|, last axis) / 127; x_u8 = QuantizeLinear(x / x_scale, 1.0, 128).

        x / x_scale in [-127, 127] is an IEEE division (the same whichever SIMD lane or tail loop
        computes it); QuantizeLinear with scale 1: round-half-even + 128, saturated to [0, 255]. An
        all-zero row makes 0/0 = NaN and an arbitrary x_u8, but its output is multiplied by
        x_scale = 0, so it is exactly 0 whatever the kernel made of the NaN."""
        at = at + "/quantize"                  # under the first product that reads x
        absx, amax, scale, unit, xq = (self.path(at, h) for h in ("abs", "amax", "x_scale", "x_div", "x_u8"))
        nodes = [self.make(at, "Abs", [x], [absx])]
        if self.opset >= 18:
            nodes.append(self.make(at, "ReduceMax", [absx, self.const_axes()], [amax], keepdims=1))
        else:
            nodes.append(self.make(at, "ReduceMax", [absx], [amax], axes=[-1], keepdims=1))
        nodes += [self.make(at, "Mul", [amax, self.const_inv127()], [scale]),
                  self.make(at, "Div", [x, scale], [unit]),
                  self.make(at, "QuantizeLinear", [unit, self.const_one(), self.const_zp()], [xq])]
        return nodes, QuantizedInput(xq, scale)

    # the shared constants, each added to the main graph the first time a node reads it
    def const_one(self) -> str:
        return self.const("/quant/one", np.array(1, np.float32))

    def const_zp(self) -> str:
        return self.const("/quant/zp128", np.array(ZP, np.uint8))

    def const_inv127(self) -> str:
        return self.const("/quant/inv127", np.array(1 / 127, np.float32))

    def const_c127(self) -> str:
        return self.const("/quant/c127", np.array(127, np.float32))

    def const_axes(self) -> str:
        return self.const("/quant/axes_last", np.array([-1], np.int64))


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
