"""The stock rowwise int8 product (made by mof.quant.rowwise itself from a one-MatMul fp32 graph)
and the same product as one mof.native::RowwiseQMatMul, with the same int8 weights and scales.
Shared by tests/native and benchmarks/native_qmatmul.py; needs onnx (the [quant] extra)."""

from __future__ import annotations

from typing import Optional

import numpy as np

OPSET = 17
IR_VERSION = 8                 # readable by every supported onnxruntime (1.20.1 .. 1.32.0)


def _fp32_graph(w: np.ndarray, bias: Optional[np.ndarray], rank: int):
    """x [..., K] -> MatMul(x, W) (+ bias) -> y: the graph rowwise.py rewrites."""
    from onnx import TensorProto, helper, numpy_helper
    K, N = w.shape
    dims_in = [f"d{i}" for i in range(rank - 1)] + [K]
    dims_out = [f"d{i}" for i in range(rank - 1)] + [N]
    inits = [numpy_helper.from_array(w.astype(np.float32), "W")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw" if bias is not None else "y"])]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        nodes.append(helper.make_node("Add", ["xw", "b"], ["y"]))
    graph = helper.make_graph(nodes, "product", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims_in)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims_out)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def graphs(w: np.ndarray, bias: Optional[np.ndarray] = None, rank: int = 2) -> tuple[bytes, bytes]:
    """(stock, native) serialized ModelProtos for y = x W (+ bias), W float [K, N]."""
    from onnx import TensorProto, helper, numpy_helper

    from mof.quant.rowwise import quantize_rowwise
    from mof.runtime.native import DOMAIN

    stock = quantize_rowwise(_fp32_graph(w, bias, rank))
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


def session(model: bytes, library: Optional[str], threads: int = 2):
    """An onnxruntime session as mof makes them (all graph optimizations), the library registered."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    if library:
        so.register_custom_ops_library(library)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
