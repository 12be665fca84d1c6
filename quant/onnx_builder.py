"""A tiny helper for writing ONNX graphs by hand with onnx.helper: constants, ops, unique names."""

from __future__ import annotations

from typing import Sequence

import numpy as np


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

    # Layers -----------------------------------------------------------------------------
    def dense(self, x: str, kernel: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
        y = self.op("MatMul", [x, self.const(kernel, f"{hint}/kernel")], hint)
        return y if bias is None else self.op("Add", [y, self.const(bias, f"{hint}/bias")], hint)

    def layer_norm(self, x: str, gamma: np.ndarray, beta: np.ndarray, eps: float, hint: str) -> str:
        return self.op("LayerNormalization",
                       [x, self.const(gamma, f"{hint}/gamma"), self.const(beta, f"{hint}/beta")],
                       hint, axis=-1, epsilon=float(eps))

    def gelu(self, x: str) -> str:
        """Exact gelu: 0.5 x (1 + erf(x / sqrt 2)), written as TF computes it and in the pattern
        onnxruntime fuses into one Gelu (BiasGelu with the Add before it)."""
        e = self.op("Erf", [self.op("Div", [x, self.const(np.sqrt(2.0))])])
        return self.op("Mul", [self.op("Mul", [x, self.const(0.5)]),
                               self.op("Add", [e, self.const(1.0)])], "gelu")

    def keras_gru(self, x_tbi: str, h0_1bu: str, kernel: np.ndarray, recurrent: np.ndarray,
                  bias: np.ndarray, hint: str) -> tuple[str, str]:
        """Keras GRU (reset_after=True) as an ONNX GRU (linear_before_reset=1).

        x [T, B, in], h0 [1, B, U] -> (Y [T, 1, B, U], Y_h [1, B, U]). Gate order z, r, h in both.
        """
        U = recurrent.shape[0]
        W = self.const(kernel.T[None], f"{hint}/W")                        # [1, 3U, in]
        R = self.const(recurrent.T[None], f"{hint}/R")                     # [1, 3U, U]
        B = self.const(np.concatenate([bias[0], bias[1]])[None], f"{hint}/B")   # [1, 6U]
        y, y_h = self.op("GRU", [x_tbi, W, R, B, "", h0_1bu], hint, outputs=2,
                         hidden_size=int(U), linear_before_reset=1)
        return y, y_h

    def scan_gru(self, x_tbi: str, h0_bu: str, kernel: np.ndarray, recurrent: np.ndarray,
                 bias: np.ndarray, hint: str) -> tuple[str, str]:
        """The same Keras GRU written with MatMuls: x W for the whole chunk, then a Scan over time
        whose body does h R — so that MatMul-based int8 quantization reaches every GRU weight.

        x [T, B, in], h0 [B, U] -> (Y [T, B, U], h_T [B, U]).
        """
        from onnx import TensorProto
        helper = self._helper
        U = recurrent.shape[0]
        xw = self.op("Add", [self.op("MatMul", [x_tbi, self.const(kernel, f"{hint}/kernel")]),
                             self.const(bias[0], f"{hint}/input_bias")], f"{hint}/xw")      # [T, B, 3U]
        R = self.const(recurrent, f"{hint}/recurrent_kernel")                             # [U, 3U]
        b_rec = self.const(bias[1], f"{hint}/recurrent_bias")                             # [3U]
        body = GraphBuilder(f"{self.prefix}/{hint}/cell")
        h, x_t = f"{hint}/h_in", f"{hint}/x_t"
        rec = body.op("Add", [body.op("MatMul", [h, R]), b_rec])                         # [B, 3U]
        sizes = body.const([U, U, U], dtype=np.int64)
        xz, xr, xh = body.op("Split", [x_t, sizes], axis=-1, outputs=3)
        rz, rr, rh = body.op("Split", [rec, sizes], axis=-1, outputs=3)
        z = body.op("Sigmoid", [body.op("Add", [xz, rz])])
        r = body.op("Sigmoid", [body.op("Add", [xr, rr])])
        hh = body.op("Tanh", [body.op("Add", [xh, body.op("Mul", [r, rh])])])
        h_new = body.op("Add", [hh, body.op("Mul", [z, body.op("Sub", [h, hh])])])      # z h + (1-z) hh
        body.output_as(h_new, f"{hint}/h_out")
        body.output_as(h_new, f"{hint}/y_t")
        vi = helper.make_tensor_value_info
        graph = body.graph(f"{hint}_cell",
                           [vi(h, TensorProto.FLOAT, ["batch", U]), vi(x_t, TensorProto.FLOAT, ["batch", 3 * U])],
                           [vi(f"{hint}/h_out", TensorProto.FLOAT, ["batch", U]),
                            vi(f"{hint}/y_t", TensorProto.FLOAT, ["batch", U])])
        h_last, y = self.op("Scan", [h0_bu, xw], hint, outputs=2, body=graph, num_scan_inputs=1)
        return y, h_last

    def graph(self, name: str, inputs: list, outputs: list):
        return self._helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
