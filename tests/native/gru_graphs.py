"""The stock int8 GRU (an ONNX GRU rewritten by mof.quant.gru_rewrite and quantized by
mof.quant.rowwise, as mof-quantize does) and the same graph after mof.quant.native.fuse (its GRU
as one mof.native::QGru, x W as RowwiseQMatMul). Shared by tests/native (run_cases.py reads the
pairs write_cases writes) and benchmarks; needs onnx (the [quant] extra)."""

from __future__ import annotations

import numpy as np

from qmatmul_graphs import IR_VERSION, OPSET


def _fp32_gru(W: np.ndarray, R: np.ndarray, B: np.ndarray, sequence: bool):
    """x [T, batch, in] -> GRU (linear_before_reset, zero initial state) -> y: its states Y
    [T, 1, batch, U] (``sequence``) or its last state Y_h [1, batch, U]."""
    from onnx import TensorProto, helper, numpy_helper
    U, n_in = R.shape[1], W.shape[1]
    inits = [numpy_helper.from_array(a[None].astype(np.float32), n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
    outs = ["y", ""] if sequence else ["", "y"]
    node = helper.make_node("GRU", ["x", "W", "R", "B"], outs, name="/gru/GRU", hidden_size=U, linear_before_reset=1)
    dims = ["T", 1, "batch", U] if sequence else [1, "batch", U]
    graph = helper.make_graph([node], "gru", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "batch", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def graphs(W: np.ndarray, R: np.ndarray, B: np.ndarray, sequence: bool) -> tuple[bytes, bytes]:
    """(stock, native) serialized ModelProtos; W [3U, in], R [3U, U], B [6U] in ONNX's gate order."""
    from mof.quant.gru_rewrite import gru_to_matmuls
    from mof.quant.native import fuse
    from mof.quant.rowwise import quantize_rowwise
    model, count = gru_to_matmuls(_fp32_gru(W, R, B, sequence))
    assert count == 1
    stock = quantize_rowwise(model).SerializeToString()
    native = quantize_rowwise(gru_to_matmuls(_fp32_gru(W, R, B, sequence))[0])
    products, grus = fuse(native)
    assert (products, grus) == (1, 1), (products, grus)
    return stock, native.SerializeToString()


def cases(seed: int = 0) -> list[dict]:
    """The GRUs checked: one step (no Loop iteration), U not a multiple of 16, more rows than a
    kernel tile (4), a U large enough to share each step out on threads, the full-size RNN
    expert's U = 1400; states read as a sequence and as the last one alone."""
    rng = np.random.default_rng(seed)

    def one(T, batch, n_in, U, sequence=True):
        W = rng.normal(size=(3 * U, n_in)).astype(np.float32) / np.sqrt(n_in)
        R = rng.normal(size=(3 * U, U)).astype(np.float32) * (2 / np.sqrt(U))
        B = rng.normal(size=6 * U).astype(np.float32) * 0.5
        x = rng.normal(size=(T, batch, n_in)).astype(np.float32) * 2
        name = f"GRU T={T} B={batch} in={n_in} U={U} {'Y' if sequence else 'Y_h'}"
        return {"name": name, "gru": (W, R, B, sequence), "x": x}

    return [one(1, 1, 8, 16), one(9, 2, 5, 37), one(6, 6, 12, 40, sequence=False), one(5, 2, 64, 300),
            one(3, 1, 96, 1400, sequence=False), one(40, 1, 16, 96)]
