"""The step, chunk and decode graphs written from the demo checkpoint equal the shipped demo
bundle's (node for node, initializer for initializer), and so do their int8 forms: the bundle is
what the current step_graph and int8 quantizer write, so a change to either that alters a graph
fails here (if the change is meant, re-export the demo bundle: docs/demo-model.md)."""

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")    # the [export] extra; a runtime-only install collects this module and skips it
from onnx import numpy_helper  # noqa: E402

from mof.export.step_graph import build_chunk_graph, build_decode_graph, build_step_graph, checkpoint_getter  # noqa: E402
from mof.quant.int8 import quantize_model  # noqa: E402
from mof.runtime import DEFAULT_BUNDLE
from mof.runtime.config import ModelConfig

pytestmark = pytest.mark.tf          # reading the checkpoint takes TensorFlow

DEMO_CKPT = Path(__file__).resolve().parents[1] / "fixtures" / "demo_ckpt" / "ckpt"
BUILDERS = {"step": build_step_graph, "chunk": build_chunk_graph, "decode": build_decode_graph}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DEFAULT_BUNDLE / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def built(manifest):
    """kind -> the graph written now from the demo checkpoint, with the bundle's model config."""
    config, get = ModelConfig.from_dict(manifest["model"]), checkpoint_getter(DEMO_CKPT)
    cache: dict = {}

    def build(kind: str):
        if kind not in cache:
            cache[kind] = BUILDERS[kind](config, get)
        return cache[kind]

    return build


def shipped(manifest, kind: str, precision: str):
    return onnx.load(str(DEFAULT_BUNDLE / manifest["graphs"][kind][precision]), load_external_data=True)


def assert_same_graph(ours, theirs):
    """Same model header, inputs, outputs, nodes (op, names, attributes) and initializers (name,
    dtype, shape, values); the first difference is named."""
    assert (ours.ir_version, ours.producer_name, list(ours.opset_import)) == \
           (theirs.ir_version, theirs.producer_name, list(theirs.opset_import))
    a, b = ours.graph, theirs.graph
    assert a.name == b.name
    assert list(a.input) == list(b.input) and list(a.output) == list(b.output)
    assert len(a.node) == len(b.node), f"{len(a.node)} nodes, the bundle's graph {len(b.node)}"
    for i, (n, m) in enumerate(zip(a.node, b.node)):
        assert n == m, f"node {i} differs: {n.op_type} {list(n.output)} vs {m.op_type} {list(m.output)}"
    assert [t.name for t in a.initializer] == [t.name for t in b.initializer]
    for t, u in zip(a.initializer, b.initializer):
        x, y = numpy_helper.to_array(t), numpy_helper.to_array(u)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f"initializer {t.name} differs"


@pytest.mark.parametrize("kind", ["decode", "step", "chunk"])
def test_the_demo_checkpoints_graph_is_the_shipped_bundles(manifest, built, kind):
    assert_same_graph(built(kind), shipped(manifest, kind, "fp32"))


@pytest.mark.parametrize("kind", ["decode", "step", "chunk"])
def test_its_int8_form_is_the_shipped_int8_graph(manifest, built, kind):
    ours = quantize_model(onnx.load_from_string(built(kind).SerializeToString()))   # a copy: it is rewritten
    assert_same_graph(ours, shipped(manifest, kind, "int8"))


ROOTS = ("embed", "router", "rnn", "positions", "state", "transformer", "mix", "lm_head", "logits", "state_out.")


@pytest.mark.parametrize("kind", ["decode", "step", "chunk"])
def test_nodes_are_named_by_the_networks_path_and_constants_stored_once(built, kind):
    """A profile or Netron reads like the network (/transformer/layers.1/attn/qkv/MatMul, ...);
    an equal constant is one initializer (GraphBuilder.const)."""
    graph = built(kind).graph
    names = [n.name for n in graph.node]
    assert len(set(names)) == len(names)
    assert all(n.startswith("/") and n.split("/")[1].startswith(ROOTS) for n in names), names
    assert "/lm_head/MatMul" in names and "/transformer/layers.1/attn/qkv/MatMul" in names
    assert "/rnn/gru.0/GRU" in names and "/router/gru/GRU" in names
    values = {(t.data_type, tuple(t.dims), numpy_helper.to_array(t).tobytes()) for t in graph.initializer}
    assert len(values) == len(graph.initializer)
