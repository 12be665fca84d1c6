"""prune_initializers: the one rule every graph rewrite ends with (rowwise, int4 and the GRU rewrite
call it): an initializer a rewrite replaced goes when no node of any graph reads it."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")          # the writer's graph tools need onnx (the quant/export extras)
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mof.writer.onnx_walk import prune_initializers, used_names  # noqa: E402


def _init(name):
    return numpy_helper.from_array(np.ones((2, 2), np.float32), name)


def _model():
    """main: x + b_main -> Loop (body: h + outer_read + body_used; body_dead unread); main_dead unread."""
    vi = helper.make_tensor_value_info
    body = helper.make_graph(
        [helper.make_node("Add", ["h_in", "outer_read"], ["t"]),
         helper.make_node("Add", ["t", "body_used"], ["h_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, []), vi("h_in", TensorProto.FLOAT, [2, 2])],
        [vi("cond_out", TensorProto.BOOL, []), vi("h_out", TensorProto.FLOAT, [2, 2])],
        [_init("body_used"), _init("body_dead"), _init("body_kept")])
    main = helper.make_graph(
        [helper.make_node("Add", ["x", "b_main"], ["h0"]),
         helper.make_node("Loop", ["trips", "", "h0"], ["y"], body=body)],
        "main", [vi("x", TensorProto.FLOAT, [2, 2])], [vi("y", TensorProto.FLOAT, [2, 2])],
        [_init("b_main"), _init("outer_read"), _init("main_dead"), _init("main_kept"),
         numpy_helper.from_array(np.array(2, np.int64), "trips")])
    return helper.make_model(main, opset_imports=[helper.make_opsetid("", 17)])


def _names(graph):
    return [t.name for t in graph.initializer]


def test_unread_candidates_go_in_every_graph_and_nothing_else_does():
    m = _model()
    assert {"outer_read", "body_used", "b_main"} <= used_names(m.graph)       # reads in the Loop body count
    prune_initializers(m.graph, {"main_dead", "outer_read", "b_main", "body_dead", "body_used", "absent"})
    body = m.graph.node[1].attribute[0].g
    assert _names(m.graph) == ["b_main", "outer_read", "main_kept", "trips"]  # read in the body: kept
    assert _names(body) == ["body_used", "body_kept"]                          # a subgraph's unread one: gone
    onnx.checker.check_model(m)


def test_no_candidates_changes_nothing():
    m = _model()
    before = m.SerializeToString()
    prune_initializers(m.graph, [])
    prune_initializers(m.graph, {"main_kept_not_a_name"})
    assert m.SerializeToString() == before
