"""A tiny helper for writing ONNX graphs by hand with onnx.helper: constants, ops, unique names,
and the GRU cell written with MatMuls (quant's GRU rewrite). Keras layers lowered to ONNX, which
only export's step graph uses, are in mof.export.onnx_layers."""

from __future__ import annotations

from typing import Sequence

import numpy as np

# doc_string of a MatMul whose input is known to lie in [-1, 1] (a GRU's hidden state): the int8
# rewrite gives it a fixed scale instead of one measured per row (quant/rowwise.py)
UNIT_INPUT = "mof: input in [-1, 1]"


class GraphBuilder:
    def __init__(self, prefix: str = "mof"):
        from onnx import helper, numpy_helper
        self._helper, self._numpy_helper = helper, numpy_helper
        self.prefix = prefix
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}/{hint}_{self._count}"

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.initializers.append(self._numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1,
           **attrs) -> str | list[str]:
        outs = [self.name(hint or op_type) for _ in range(outputs)]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if outputs == 1 else outs

    def op_named(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attrs) -> None:
        """An op whose outputs get the given names (to splice into an existing graph)."""
        self.nodes.append(self._helper.make_node(op_type, list(inputs), list(outputs), **attrs))

    def output_as(self, value: str, name: str) -> None:
        """Expose ``value`` under the graph output name ``name``."""
        self.nodes.append(self._helper.make_node("Identity", [value], [name]))

    def matmul_gru(self, x_tbi: str, h0_bu: str, kernel: np.ndarray, recurrent: np.ndarray,
                   bias: np.ndarray, hint: str, sequence: bool = True) -> tuple[str | None, str]:
        """The same Keras GRU written with MatMuls: x W for the whole chunk, then h R step by
        step — so that MatMul-based int8 quantization reaches every GRU weight.

        The first step runs at top level and the others in a Loop over x[1:], which makes no
        iterations for a one-token chunk (every decoding call): a Scan over the whole chunk
        costs more than the cell at one token, and onnxruntime's Scan refuses zero steps.

        x [T, B, in], h0 [B, U] -> (Y [T, B, U], h_T [B, U]); ``sequence=False``: (None, h_T),
        the Loop with no per-step outputs.
        """
        from onnx import TensorProto
        helper = self._helper
        vi = helper.make_tensor_value_info
        U = recurrent.shape[0]
        # the recurrent bias of the z and r gates is added with the input's (it is only ever added
        # to x W); the h gate's stays in the cell: r * (h R_h + b_h)
        b_in = bias[0] + np.concatenate([bias[1][:2 * U], np.zeros(U, bias.dtype)])
        xw = self.op("Add", [self.op("MatMul", [x_tbi, self.const(kernel, f"{hint}/kernel")]),
                             self.const(b_in, f"{hint}/input_bias")], f"{hint}/xw")         # [T, B, 3U]
        R = self.const(recurrent, f"{hint}/recurrent_kernel")                             # [U, 3U]
        b_h = self.const(bias[1][2 * U:], f"{hint}/recurrent_bias_h")                     # [U]

        def cell(g: "GraphBuilder", h: str, x_t: str) -> str:
            """h [B, U], x_t = x W + b [B, 3U] -> the new h [B, U] (gate order z, r, h)."""
            rec = g.op("MatMul", [h, R], doc_string=UNIT_INPUT)                           # [B, 3U]
            sizes = g.const([2 * U, U], dtype=np.int64)
            x_zr, x_h = g.op("Split", [x_t, sizes], axis=-1, outputs=2)
            r_zr, r_h = g.op("Split", [rec, sizes], axis=-1, outputs=2)
            z, r = g.op("Split", [g.op("Sigmoid", [g.op("Add", [x_zr, r_zr])]), g.const([U, U], dtype=np.int64)],
                        axis=-1, outputs=2)
            hh = g.op("Tanh", [g.op("Add", [x_h, g.op("Mul", [r, g.op("Add", [r_h, b_h])])])])
            return g.op("Add", [hh, g.op("Mul", [z, g.op("Sub", [h, hh])])])             # z h + (1-z) hh

        # the first step at top level (a one-token chunk — every decoding call — needs nothing
        # else), the rest in a Loop over x[1:], which runs no iterations for one token
        zero = self.const([0], dtype=np.int64)
        one_i = self.const([1], dtype=np.int64)
        h1 = cell(self, h0_bu, self.op("Squeeze", [self.op("Slice", [xw, zero, one_i, zero]), zero]))  # [B, U]
        rest = self.op("Slice", [xw, one_i, self.const([2**62], dtype=np.int64), zero])        # [T-1, B, 3U]
        trips = self.op("Squeeze", [self.op("Slice", [self.op("Shape", [rest]), zero, one_i]), zero])
        body = GraphBuilder(f"{self.prefix}/{hint}/cell")
        it, cond, h = f"{hint}/iter", f"{hint}/cond_in", f"{hint}/h_in"
        h_new = cell(body, h, body.op("Gather", [rest, it], axis=0))
        body.output_as(cond, f"{hint}/cond_out")
        body.output_as(h_new, f"{hint}/h_out")
        outs = [vi(f"{hint}/cond_out", TensorProto.BOOL, []), vi(f"{hint}/h_out", TensorProto.FLOAT, ["batch", U])]
        if sequence:
            body.output_as(h_new, f"{hint}/y_t")
            outs.append(vi(f"{hint}/y_t", TensorProto.FLOAT, ["batch", U]))
        loop_body = body.graph(f"{hint}_cell",
                               [vi(it, TensorProto.INT64, []), vi(cond, TensorProto.BOOL, []),
                                vi(h, TensorProto.FLOAT, ["batch", U])], outs)
        if not sequence:
            return None, self.op("Loop", [trips, "", h1], hint, body=loop_body)
        h_last, y_rest = self.op("Loop", [trips, "", h1], hint, outputs=2, body=loop_body)
        y = self.op("Concat", [self.op("Unsqueeze", [h1, zero]), y_rest], axis=0)             # [T, B, U]
        return y, h_last

    def graph(self, name: str, inputs: list, outputs: list):
        return self._helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
