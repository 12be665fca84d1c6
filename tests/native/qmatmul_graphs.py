"""The stock rowwise int8 product (made by mof.quant.rowwise itself from a one-MatMul fp32 graph)
and the same product as one mof.native::RowwiseQMatMul, with the same int8 weights and scales.
Shared by tests/native and benchmarks/native_qmatmul.py; needs onnx (the [quant] extra)."""

from __future__ import annotations

from typing import Optional

import numpy as np

OPSET = 17
IR_VERSION = 8                 # readable by every supported onnxruntime (1.20.1 .. 1.32.0)


RESIDUALS = {   # a residual Add after the product (K = N): what the product reads, what it adds
    "same": ("x", "Neg(x)"),                        # y's shape
    "smaller": ("x", "ReduceMean(x, axis 0)"),      # broadcast along the first axis
    "larger": ("ReduceMean(x, axis 0)", "Neg(x)"),  # the product's rows broadcast along it
}


def _fp32_graph(w: np.ndarray, bias: Optional[np.ndarray], rank: int, residual: Optional[str] = None):
    """x [..., K] -> MatMul(x, W) (+ bias) (+ a residual, RESIDUALS: K = N) -> y: the graph
    rowwise.py rewrites."""
    from onnx import TensorProto, helper, numpy_helper
    K, N = w.shape
    dims_in = [f"d{i}" for i in range(rank - 1)] + [K]
    dims_out = [f"d{i}" for i in range(rank - 1)] + [N]
    inits = [numpy_helper.from_array(w.astype(np.float32), "W")]
    mean = helper.make_node("ReduceMean", ["x"], ["x_mean"], axes=[0], keepdims=1)
    reads = "x_mean" if residual == "larger" else "x"
    nodes = ([mean] if residual in ("smaller", "larger") else []) + [helper.make_node("MatMul", [reads, "W"], ["xw"])]
    last = "xw"
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        nodes.append(helper.make_node("Add", ["xw", "b"], ["xwb"]))
        last = "xwb"
    if residual:
        if residual != "smaller":
            nodes.append(helper.make_node("Neg", ["x"], ["r"]))
        nodes.append(helper.make_node("Add", ["x_mean" if residual == "smaller" else "r", last], ["y_r"]))
        last = "y_r"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(nodes, "product", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims_in)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims_out)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def graphs(w: np.ndarray, bias: Optional[np.ndarray] = None, rank: int = 2,
           residual: Optional[str] = None) -> tuple[bytes, bytes]:
    """(stock, native) serialized ModelProtos for y = x W (+ bias) (+ a residual), W float [K, N];
    with a residual, the native graph is mof.quant.native.fuse_rowwise's rewrite of the stock one."""
    from onnx import TensorProto, helper, numpy_helper

    from mof.quant.native import fuse_rowwise
    from mof.quant.rowwise import quantize_rowwise
    from mof.runtime.native import DOMAIN

    stock = quantize_rowwise(_fp32_graph(w, bias, rank, residual))
    if residual:
        stock_bytes = stock.SerializeToString()
        assert fuse_rowwise(stock) == 1
        fused = next(n for n in stock.graph.node if n.op_type == "RowwiseQMatMul")
        assert len(fused.input) == 5 and fused.input[4] in ("r", "x_mean"), fused.input    # the residual fused
        return stock_bytes, stock.SerializeToString()
    inits = {t.name: t for t in stock.graph.initializer}
    K, N = w.shape
    keep = [inits["W/s8"], inits["W/scale"]] + ([inits["b"]] if bias is not None else [])
    node = helper.make_node("RowwiseQMatMul", ["x", "W/s8", "W/scale"] + (["b"] if bias is not None else []),
                            ["y"], domain=DOMAIN)
    graph = helper.make_graph([node], "product_native", list(stock.graph.input), list(stock.graph.output), keep)
    native = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                     helper.make_opsetid(DOMAIN, 1)], ir_version=IR_VERSION)
    assert numpy_helper.to_array(inits["W/s8"]).dtype == np.int8 and TensorProto.INT8 == inits["W/s8"].data_type
    return stock.SerializeToString(), native.SerializeToString()


def cases(seed: int = 0) -> list[dict]:
    """The products checked: name, W [K, N], bias or None, x. Shapes: one row, a 113-token window,
    N not a multiple of 16 or 32, K not a multiple of 4, a 3-D x, no rows at all; rows that are all
    zero, huge, tiny (subnormal scale) or one spike among zeros; a residual connection's Add after
    the product (and its bias) fused too."""
    rng = np.random.default_rng(seed)

    def one(name, M, K, N, bias=False, rank=2, residual=None):
        w = rng.normal(size=(K, N)).astype(np.float32)
        x = rng.normal(size=(M, K)).astype(np.float32)
        if M >= 6:
            x[0] = 0                                      # an all-zero row: 0 / 0 in the stock graph
            x[2] *= np.float32(1e30)                      # large magnitudes
            x[3] *= np.float32(1e-38)                     # x_scale subnormal
            x[4] = 0
            x[4, K // 2] = -3.5                           # one spike
            x[M - 1] = 0
        b = rng.normal(size=N).astype(np.float32) * 4 if bias else None
        if rank == 3:
            x = x.reshape(M // 3, 3, K)
        return {"name": name, "w": w, "bias": b, "x": x, "rank": rank, "residual": residual}

    return [one("1x1024.1024x1024", 1, 1024, 1024),
            one("113x1024.1024x1024+bias", 113, 1024, 1024, bias=True),
            one("113x1024.1024x1000", 113, 1024, 1000),
            one("113x1024.1024x4200", 113, 1024, 4200),
            one("17x1400.1400x4200+bias", 17, 1400, 4200, bias=True),
            one("7x13.13x17+bias", 7, 13, 17, bias=True),
            one("1x1.1x1", 1, 1, 1),
            one("3-D 2x3x1024.1024x200", 6, 1024, 200, rank=3),
            one("0x64.64x48", 0, 64, 48),
            one("113x512.512x512+bias+res", 113, 512, 512, bias=True, residual="same"),
            one("1x64.64x64+res", 1, 64, 64, residual="same"),
            one("3-D 2x3x96.96x96+bias+res", 6, 96, 96, bias=True, rank=3, residual="same"),
            one("3-D 4x3x96.96x96+res[1x3x96]", 12, 96, 96, rank=3, residual="smaller"),
            one("3-D [1x3x96].96x96+bias+res 4x3x96", 12, 96, 96, bias=True, rank=3, residual="larger")]


def write_cases(folder, seed: int = 0) -> list[dict]:
    """Write each case's two graphs and x into ``folder`` (what run_cases.py reads): the products
    here and the GRUs of gru_graphs.py; the cases."""
    import json
    from pathlib import Path
    folder = Path(folder)
    import gru_graphs
    listed = []
    for i, case in enumerate(cases(seed) + gru_graphs.cases(seed)):
        stock, native = gru_graphs.graphs(*case["gru"]) if "gru" in case else graphs(case["w"], case["bias"], case["rank"], case["residual"])
        (folder / f"{i}.stock.onnx").write_bytes(stock)
        (folder / f"{i}.native.onnx").write_bytes(native)
        np.save(folder / f"{i}.x.npy", case["x"])
        listed.append({"id": i, "name": case["name"]})
    (folder / "cases.json").write_text(json.dumps(listed))
    return listed
