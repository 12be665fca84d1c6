"""GraphBuilder: nodes named by path, one initializer per constant value."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")      # the [export] / [quant] extra

from mof.writer.onnx_builder import GraphBuilder  # noqa: E402


def test_nodes_are_named_by_scope_hint_and_type_and_repeats_are_numbered():
    g = GraphBuilder()
    with g.scope("transformer", "layers.1"):
        with g.scope("attn"):
            first = g.op("MatMul", ["x", "w"], "qkv")
            second = g.op("MatMul", [first, "w"], "qkv")
        split = g.op("Split", [second], outputs=2, axis=-1)
    g.output_as(split[0], "y")
    assert [n.name for n in g.nodes] == ["/transformer/layers.1/attn/qkv/MatMul", "/transformer/layers.1/attn/qkv/MatMul_1",
                                         "/transformer/layers.1/Split", "/y/Identity"]
    assert first == "/transformer/layers.1/attn/qkv/MatMul/output_0"
    assert split == ["/transformer/layers.1/Split/output_0", "/transformer/layers.1/Split/output_1"]
    assert list(g.nodes[-1].output) == ["y"]
    sub = GraphBuilder("/transformer/layers.1/attn/rows/If/then")       # a branch: its node's path
    assert sub.op("CumSum", ["v", "axis"], "z") == "/transformer/layers.1/attn/rows/If/then/z/CumSum/output_0"


def test_an_equal_constant_is_one_initializer():
    g = GraphBuilder()
    with g.scope("router"):
        kernel = g.const(np.ones((2, 3)), "dense/kernel")
        assert g.const(np.ones((2, 3), np.float32), "other/kernel") == kernel == "/router/dense/kernel"
    zero = g.const([0], dtype=np.int64)
    assert zero == "/const/int64/[0]" and g.const(np.array([0]), dtype=np.int64) == zero
    assert g.const([0], dtype=np.float32) == "/const/float32/[0]"          # another dtype, another constant
    assert g.const(0, dtype=np.int64) == "/const/int64/0"                  # another shape too
    assert g.const(np.ones((3, 2)), "dense/kernel") != kernel              # same values, another shape
    assert len(g.initializers) == 5 and len({t.name for t in g.initializers}) == 5
