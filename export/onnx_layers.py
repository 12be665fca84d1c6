"""Keras layers (Dense, LayerNormalization, exact gelu, GRU with reset_after) lowered to ONNX
ops on top of mof.writer.onnx_builder's primitives; used by the step graph (step_graph.py)."""

from __future__ import annotations

import numpy as np

from mof.writer.onnx_builder import GraphBuilder


class LayerGraphBuilder(GraphBuilder):
    """A GraphBuilder that also writes Keras layers from their weights. ``hint``: the layer's name
    under the current scope ("" for the scope itself): its nodes are ``<hint>/MatMul``, ..., its
    weights ``<hint>/kernel``, ..."""

    def dense(self, x: str, kernel: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
        y = self.op("MatMul", [x, self.const(kernel, _under(hint, "kernel"))], hint)
        return y if bias is None else self.op("Add", [y, self.const(bias, _under(hint, "bias"))], hint)

    def layer_norm(self, x: str, gamma: np.ndarray, beta: np.ndarray, eps: float, hint: str) -> str:
        return self.op("LayerNormalization",
                       [x, self.const(gamma, _under(hint, "gamma")), self.const(beta, _under(hint, "beta"))],
                       hint, axis=-1, epsilon=float(eps))

    def gelu(self, x: str) -> str:
        """Exact gelu: 0.5 x (1 + erf(x / sqrt 2)), written as TF computes it and in the pattern
        onnxruntime fuses into one Gelu (BiasGelu with the Add before it)."""
        with self.scope("gelu"):
            e = self.op("Erf", [self.op("Div", [x, self.const(np.sqrt(2.0))])])
            return self.op("Mul", [self.op("Mul", [x, self.const(0.5)]), self.op("Add", [e, self.const(1.0)])])

    def keras_gru(self, x_tbi: str, h0_1bu: str, kernel: np.ndarray, recurrent: np.ndarray,
                  bias: np.ndarray, hint: str, sequence: bool = True) -> tuple[str, str]:
        """Keras GRU (reset_after=True) as an ONNX GRU (linear_before_reset=1).

        x [T, B, in], h0 [1, B, U] -> (Y [T, 1, B, U], Y_h [1, B, U]); ``sequence=False``: Y is
        not written (its output left empty, returned as None). Gate order z, r, h in both.
        """
        U = recurrent.shape[0]
        W = self.const(kernel.T[None], _under(hint, "W"))                  # [1, 3U, in]
        R = self.const(recurrent.T[None], _under(hint, "R"))               # [1, 3U, U]
        B = self.const(np.concatenate([bias[0], bias[1]])[None], _under(hint, "B"))   # [1, 6U]
        node = self.name(_under(hint, "GRU"))
        y, y_h = f"{node}/output_0", f"{node}/output_1"
        self.op_named("GRU", [x_tbi, W, R, B, "", h0_1bu], [y if sequence else "", y_h], node=node,
                      hidden_size=int(U), linear_before_reset=1)
        return (y if sequence else None), y_h


def _under(hint: str, name: str) -> str:
    return f"{hint}/{name}" if hint else name
