"""Both graph rewrites prune replaced initializers with one rule (writer/onnx_walk.py
prune_initializers), subgraphs included: per-row int8 drops a Loop body's own float weight once it
is quantized, and the GRU rewrite keeps a GRU weight a Loop body still reads (it used to look at
the main graph's nodes only, and dropped it)."""

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx")          # mof-quantize's extra: a runtime-only install skips these
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mof.quant.gru_rewrite import gru_to_matmuls  # noqa: E402
from mof.quant.rowwise import quantize_rowwise  # noqa: E402
from mof.writer.onnx_walk import all_graphs  # noqa: E402

vi = helper.make_tensor_value_info
K, U, I = 16, 8, 6          # the Loop's width; the GRU's units and input width


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _loop(body_nodes, carried: str, shape, body_inits=()):
    """A Loop body (two trips) carrying ``carried`` [shape] from ``{carried}_in`` to ``{carried}_out``."""
    return helper.make_graph(
        body_nodes + [helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, []),
         vi(f"{carried}_in", TensorProto.FLOAT, shape)],
        [vi("cond_out", TensorProto.BOOL, []), vi(f"{carried}_out", TensorProto.FLOAT, shape)], list(body_inits))


def test_rowwise_drops_a_loop_bodys_own_float_weight():
    w = np.random.default_rng(0).normal(0, 0.3, (K, K)).astype(np.float32)
    body = _loop([helper.make_node("MatMul", ["h_in", "w_body"], ["h_out"])], "h", [2, K],
                 [numpy_helper.from_array(w, "w_body")])
    main = helper.make_graph([helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)], "main",
                             [vi("x", TensorProto.FLOAT, [2, K])], [vi("y", TensorProto.FLOAT, [2, K])],
                             [numpy_helper.from_array(np.array(2, np.int64), "trips")])
    model = helper.make_model(main, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(1).normal(0, 1, (2, K)).astype(np.float32)
    want = _run(model, {"x": x})[0]
    q = quantize_rowwise(model)
    names = [t.name for g in all_graphs(q.graph) for t in g.initializer]
    assert "w_body" not in names and "w_body/s8" in names          # the float copy is gone, the int8 one read
    got = _run(q, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=0.05 * np.abs(want).max())


def _gru_model():
    """A GRU (its recurrent weight R also read by a Loop body: v + R, twice) beside that Loop."""
    rng = np.random.default_rng(2)
    W, R = (rng.normal(0, 0.4, (1, 3 * U, n)).astype(np.float32) for n in (I, U))
    B = rng.normal(0, 0.1, (1, 6 * U)).astype(np.float32)
    body = _loop([helper.make_node("Add", ["v_in", "R"], ["v_out"])], "v", [1, 3 * U, U])
    main = helper.make_graph(
        [helper.make_node("GRU", ["x", "W", "R", "B"], ["", "h_last"], hidden_size=U, linear_before_reset=1),
         helper.make_node("Loop", ["trips", "", "v0"], ["v"], body=body)], "main",
        [vi("x", TensorProto.FLOAT, [3, 1, I])],
        [vi("h_last", TensorProto.FLOAT, [1, 1, U]), vi("v", TensorProto.FLOAT, [1, 3 * U, U])],
        [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))]
        + [numpy_helper.from_array(np.array(2, np.int64), "trips"),
           numpy_helper.from_array(np.zeros((1, 3 * U, U), np.float32), "v0")])
    return helper.make_model(main, opset_imports=[helper.make_opsetid("", 17)])


def test_the_gru_rewrite_keeps_a_weight_a_loop_body_reads_and_drops_the_others():
    model = _gru_model()
    x = np.random.default_rng(3).normal(0, 1, (3, 1, I)).astype(np.float32)
    want = _run(model, {"x": x})
    rewritten, count = gru_to_matmuls(model)
    names = [t.name for t in rewritten.graph.initializer]
    assert count == 1 and "R" in names and "W" not in names and "B" not in names
    onnx.checker.check_model(rewritten)
    got = _run(rewritten, {"x": x})
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got[1], want[1])
