"""A small helper for writing ONNX graphs by hand with onnx.helper: nodes named by path, one
initializer per constant value, and the GRU cell written with MatMuls (quant's GRU rewrite). Keras
layers lowered to ONNX, which only export's step graph uses, are in mof.export.onnx_layers."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import numpy as np

# doc_string of a MatMul whose input is known to lie in [-1, 1] (a GRU's hidden state): the int8
# rewrite gives it a fixed scale instead of one measured per row (quant/rowwise.py)
UNIT_INPUT = "mof: input in [-1, 1]"


class GraphBuilder:
    """Nodes are named by path, as onnxruntime-genai's builder names them (``/router/dense/MatMul``,
    ``/transformer/layers.1/attn/qkv/MatMul``), so that a profile or Netron reads like the network:
    ``prefix`` (a subgraph's: the path of the node that holds it), the ``scope``s entered, the op's
    ``hint`` and its type; a node's outputs are ``<node>/output_<i>``. An equal constant is one
    initializer: ``const`` returns the name it was first given."""

    def __init__(self, prefix: str = "", taken: Iterable[str] = ()):
        from onnx import helper, numpy_helper
        self._helper, self._numpy_helper = helper, numpy_helper
        self.prefix = prefix.rstrip("/")
        self.nodes: list = []
        self.initializers: list = []
        self._scopes: list[str] = []
        self._taken: set[str] = set(taken)          # names given, and those of the graph spliced into
        self._consts: dict[tuple, str] = {}        # (dtype, shape, bytes) -> initializer name

    @contextlib.contextmanager
    def scope(self, *parts: str) -> Iterator[None]:
        """Name what is written inside under ``parts`` (a module path: "transformer", "layers.0")."""
        self._scopes.extend(parts)
        try:
            yield
        finally:
            del self._scopes[len(self._scopes) - len(parts):]

    def name(self, hint: str) -> str:
        """A new unique path: the prefix, the scopes, ``hint`` (``_1``, ``_2``, ... when taken)."""
        return self._unique("/".join([self.prefix, *self._scopes, hint]))

    def const(self, value, hint: str | None = None, dtype=np.float32) -> str:
        """An initializer holding ``value``; the same one for an equal value (dtype, shape and
        bytes). ``hint``: a weight's name under the current scope; without one, a small constant
        is named by its value (``/const/int64/[0,0,4,24]``)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            if hint is None and arr.size <= 8:
                text = ",".join(f"{v:g}" if arr.dtype.kind == "f" else str(v) for v in arr.ravel().tolist())
                text = f"[{text}]" if arr.ndim else text
                name = self._unique(f"{self.prefix}/const/{arr.dtype}/{text}")
            else:
                name = self.name(hint or "const")
            self.initializers.append(self._numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def _unique(self, path: str) -> str:
        name, n = path, 0
        while name in self._taken:
            n += 1
            name = f"{path}_{n}"
        self._taken.add(name)
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1,
           **attrs) -> str | list[str]:
        """A node named ``<scope>/<hint>/<op_type>`` (``<scope>/<op_type>`` without a hint)."""
        node = self.name(f"{hint}/{op_type}" if hint else op_type)
        outs = [f"{node}/output_{i}" for i in range(outputs)]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), outs, name=node, **attrs))
        return outs[0] if outputs == 1 else outs

    def op_named(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], node: str | None = None,
                 **attrs) -> None:
        """An op whose outputs get the given names (to splice into an existing graph); ``node``:
        its name (default: a new path for ``op_type``)."""
        self.nodes.append(self._helper.make_node(op_type, list(inputs), list(outputs),
                                                 name=node or self.name(op_type), **attrs))

    def output_as(self, value: str, name: str) -> None:
        """Expose ``value`` under the graph output name ``name``."""
        self.op_named("Identity", [value], [name], node=self.name(f"{name}/Identity"))

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
        U = recurrent.shape[0]
        # the recurrent bias of the z and r gates is added with the input's (it is only ever added
        # to x W); the h gate's stays in the cell: r * (h R_h + b_h)
        b_in = bias[0] + np.concatenate([bias[1][:2 * U], np.zeros(U, bias.dtype)])
        with self.scope(hint):
            xw = self.op("Add", [self.op("MatMul", [x_tbi, self.const(kernel, "kernel")], "xw"),
                                 self.const(b_in, "input_bias")], "xw")                     # [T, B, 3U]
            R = self.const(recurrent, "recurrent_kernel")                                 # [U, 3U]
            b_h = self.const(bias[1][2 * U:], "recurrent_bias_h")                         # [U]
            # the first step at top level (a one-token chunk — every decoding call — needs nothing
            # else), the rest in a Loop over x[1:], which runs no iterations for one token
            zero, one_i = self.const([0], dtype=np.int64), self.const([1], dtype=np.int64)
            with self.scope("step0"):
                h1 = _gru_cell(self, h0_bu, self.op("Squeeze", [self.op("Slice", [xw, zero, one_i, zero]), zero]),
                               R, b_h, U)                                                 # [B, U]
            rest = self.op("Slice", [xw, one_i, self.const([2**62], dtype=np.int64), zero], "rest")  # [T-1, B, 3U]
            return self._gru_loop(f"{hint}_cell", rest, h1, R, b_h, U, sequence)

    def _gru_loop(self, name: str, rest: str, h1: str, R: str, b_h: str, U: int,
                  sequence: bool) -> tuple[str | None, str]:
        """matmul_gru's steps after the first: a Loop (its body graph ``name``) over rest = x[1:] W + b
        [T-1, B, 3U] from h1 [B, U] -> (Y [T, B, U] or None, h_T [B, U])."""
        from onnx import TensorProto
        vi = self._helper.make_tensor_value_info
        zero, one_i = self.const([0], dtype=np.int64), self.const([1], dtype=np.int64)
        trips = self.op("Squeeze", [self.op("Slice", [self.op("Shape", [rest]), zero, one_i]), zero], "trips")
        loop = self.name("Loop")
        body = GraphBuilder(f"{loop}/body")
        it, cond, h, cond_out, h_out, y_t = (f"{body.prefix}/{n}" for n in ("iter", "cond_in", "h_in", "cond_out",
                                                                              "h_out", "y_t"))
        h_new = _gru_cell(body, h, body.op("Gather", [rest, it], axis=0), R, b_h, U)
        outs = [vi(cond_out, TensorProto.BOOL, []), vi(h_out, TensorProto.FLOAT, ["batch", U])]
        body.output_as(cond, cond_out)
        body.output_as(h_new, h_out)
        if sequence:
            body.output_as(h_new, y_t)
            outs.append(vi(y_t, TensorProto.FLOAT, ["batch", U]))
        loop_body = body.graph(name, [vi(it, TensorProto.INT64, []), vi(cond, TensorProto.BOOL, []),
                                      vi(h, TensorProto.FLOAT, ["batch", U])], outs)
        results = [f"{loop}/output_{i}" for i in range(1 + sequence)]
        self.op_named("Loop", [trips, "", h1], results, node=loop, body=loop_body)
        if not sequence:
            return None, results[0]
        y = self.op("Concat", [self.op("Unsqueeze", [h1, zero]), results[1]], "y", axis=0)      # [T, B, U]
        return y, results[0]

    def graph(self, name: str, inputs: list, outputs: list):
        return self._helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)


def _gru_cell(g: GraphBuilder, h: str, x_t: str, R: str, b_h: str, U: int) -> str:
    """One GRU step written with ``g``: h [B, U], x_t = x W + b [B, 3U] -> the new h [B, U] (gate
    order z, r, h; R [U, 3U] and b_h [U] as matmul_gru makes them)."""
    rec = g.op("MatMul", [h, R], "recurrent", doc_string=UNIT_INPUT)                      # [B, 3U]
    sizes = g.const([2 * U, U], dtype=np.int64)
    x_zr, x_h = g.op("Split", [x_t, sizes], "input", axis=-1, outputs=2)
    r_zr, r_h = g.op("Split", [rec, sizes], "recurrent", axis=-1, outputs=2)
    z, r = g.op("Split", [g.op("Sigmoid", [g.op("Add", [x_zr, r_zr])]), g.const([U, U], dtype=np.int64)],
                "gates", axis=-1, outputs=2)
    hh = g.op("Tanh", [g.op("Add", [x_h, g.op("Mul", [r, g.op("Add", [r_h, b_h])])])])
    return g.op("Add", [hh, g.op("Mul", [z, g.op("Sub", [h, hh])])], "h")               # z h + (1-z) hh
