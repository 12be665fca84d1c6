"""int4 graphs (MatMulNBits): load, same interface as fp32, every MatMul weight packed (Loop bodies too),
no large float weight, and close to fp32 on the demo bundle (a real chat-trained small T6)."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx")      # a runtime-only install has no onnx: skip, not a collection error

from mof.measure.accuracy import compare, exact_logits, perplexity, stream_logits
from mof.measure.gates import QUANT_MAX_PPL_CHANGE
from mof.quant.int4 import quantize_model_int4
from mof.quant.int8 import LARGE_FLOAT_LIMIT, large_float_initializers
from mof.runtime.contract import INT8_FILES
from mof.runtime.errors import MofError
from mof.runtime.model import Model
from mof.runtime.vocab import Vocabulary

HELDOUT = Path(__file__).resolve().parents[1] / "fixtures" / "demo_ckpt" / "heldout.txt"
TOKENS = 256
# Measured with the defaults (block 32, accuracy_level 4, asymmetric) on the demo, 256 characters of
# heldout.txt, Intel Xeon (AVX-512 VNNI), onnxruntime 1.32.0: top-1 agreement exact 92.6 % / stream 91.8 %,
# perplexity change +0.82 % / +0.97 %, mean KL 0.0159 / 0.0159 (benchmarks/results/2026-11-28/int4_blocks.md
# has 512 characters and every block size). On this 96-wide model int4 passes the product's perplexity gate
# (measure/gates.py QUANT_MAX_PPL_CHANGE, asserted below) and misses its top-1 gate (QUANT_MIN_TOP1), as
# docs/quantization.md says; the top-1 and KL bounds below, with margin for other CPUs (accuracy_level 4's
# int8 kernels differ by CPU), are this test's expectations of the demo, not gates of the product:
DEMO_INT4_MIN_TOP1 = 0.88
DEMO_INT4_MAX_MEAN_KL = 0.03


def _nodes(graph, depth=0):
    """(node, depth) for every node of ``graph`` and its subgraphs (depth 0: the main graph)."""
    for n in graph.node:
        yield n, depth
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(a.g, depth + 1)
            for g in a.graphs:
                yield from _nodes(g, depth + 1)


def _initializers(graph):
    yield from graph.initializer
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _initializers(a.g)


@pytest.fixture(scope="module")
def int4_graphs(demo_bundle):
    manifest = json.loads((demo_bundle / "manifest.json").read_text(encoding="utf-8"))
    return {name: (onnx.load(str(demo_bundle / manifest["graphs"][name]["fp32"])),
                   quantize_model_int4(onnx.load(str(demo_bundle / manifest["graphs"][name]["fp32"]))))
            for name in INT8_FILES}


def test_int4_graphs_load_with_the_fp32_interface(int4_graphs):
    for name, (fp32, q) in int4_graphs.items():
        a = ort.InferenceSession(fp32.SerializeToString(), providers=["CPUExecutionProvider"])
        b = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
        io = lambda s: ([(i.name, i.type, i.shape) for i in s.get_inputs()],
                        [(o.name, o.type, o.shape) for o in s.get_outputs()])
        assert io(a) == io(b), name


def test_every_matmul_weight_is_int4(int4_graphs):
    for name, (fp32, q) in int4_graphs.items():
        assert large_float_initializers(fp32, LARGE_FLOAT_LIMIT), "the check must see the fp32 weights"
        assert large_float_initializers(q) == []
        nodes = list(_nodes(q.graph))
        assert not [n for n, _ in nodes if n.op_type in ("GRU", "MatMul")
                    and any(n.input[1] == t.name for t in _initializers(q.graph))]
        nbits = [(n, d) for n, d in nodes if n.op_type == "MatMulNBits"]
        assert any(d == 0 for _, d in nbits) and any(d > 0 for _, d in nbits), "main graph and Loop bodies"
        for n, _ in nbits:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            assert n.domain == "com.microsoft" and attrs["bits"] == 4
        # ordinary initializers: the bundle writer decides where weights are stored
        assert all(t.data_location == onnx.TensorProto.DEFAULT for t in _initializers(q.graph))


def test_options_reach_the_nodes(demo_bundle):
    q = quantize_model_int4(onnx.load(str(demo_bundle / "step.onnx")), block_size=64, accuracy_level=0,
                            symmetric=False)
    nbits = [n for n, _ in _nodes(q.graph) if n.op_type == "MatMulNBits"]
    assert nbits
    for n in nbits:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["block_size"] == 64 and "accuracy_level" not in attrs
        assert len(n.input) == 4                                    # A, packed B, scales, zero points
    ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(MofError, match="block size"):
        quantize_model_int4(onnx.load(str(demo_bundle / "step.onnx")), block_size=48)


def _model(bundle, graphs: dict, precision: str) -> Model:
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    sessions = {n: ort.InferenceSession(g.SerializeToString(), providers=["CPUExecutionProvider"])
                for n, g in graphs.items()}
    return Model(bundle, manifest, sessions, Vocabulary.from_json_file(bundle / "vocab.json"), precision)


def test_int4_agrees_with_fp32_on_the_demo(demo_bundle, int4_graphs):
    fp32 = _model(demo_bundle, {n: g[0] for n, g in int4_graphs.items()}, "fp32")
    int4 = _model(demo_bundle, {n: g[1] for n, g in int4_graphs.items()}, "int4")
    ids = np.asarray(fp32.vocab.encode(HELDOUT.read_text(encoding="utf-8")[: TOKENS + 1]), np.int32)
    for mode, fn in (("exact", exact_logits), ("stream", stream_logits)):
        a, b = fn(fp32, ids[:-1]), fn(int4, ids[:-1])
        r = compare(a, b)
        change = perplexity(b, ids[1:]) / perplexity(a, ids[1:]) - 1
        print(mode, f"top-1 {r['top1_agreement']:.1%}, perplexity {change:+.2%}, mean KL {r['mean_kl']:.3g}")
        assert r["max_abs_diff"] > 1e-3, "int4 must not be fp32 in disguise"
        assert r["top1_agreement"] >= DEMO_INT4_MIN_TOP1
        assert change <= QUANT_MAX_PPL_CHANGE
        assert r["mean_kl"] <= DEMO_INT4_MAX_MEAN_KL
