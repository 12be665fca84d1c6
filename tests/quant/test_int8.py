"""int8 graphs: every large weight int8 (GRUs included), accuracy gates on a trained model, atomic mof-quantize."""

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx")      # a runtime-only install has no onnx: skip, not a collection error

from mof_testing import TRAINED, export_bundle, tiny_config
from mof.quant.cli import main as quantize_main
from mof.quant.gru_rewrite import gru_to_matmuls
from mof.quant.int8 import LARGE_FLOAT_LIMIT, large_float_initializers
from mof.runtime import Generator, Model, SamplingConfig
from mof.runtime.bundle import verify_bundle
from mof.runtime.contract import INT8_FILES
from mof.runtime.state import State

pytestmark = pytest.mark.tf


def _export(prefix, out, cfg, **kw):
    return export_bundle(prefix, out, cfg, eval_tokens=64, **kw)


def _feeds(cfg, sess, ids, seed=None):
    """Graph inputs for ``ids``; the step graph gets the zero state, or a random one with ``seed``."""
    names = {i.name for i in sess.get_inputs()}
    feeds = {"input_ids": ids}
    if "position" in names:
        st = State.zeros(cfg, ids.shape[0])
        feeds.update(position=st.position + (0 if seed is None else 5), **st.feeds(cfg))
        if seed is not None:
            rng = np.random.default_rng(seed)
            for k, v in list(feeds.items()):
                if k.startswith("state."):
                    feeds[k] = rng.uniform(-0.9, 0.9, v.shape).astype(np.float32)
    if "refill" in names:                          # the decode graph, as the step graph
        feeds["refill"] = np.array(False)
    return feeds


def test_gru_rewrite_is_the_same_function(tiny_bundle):
    m = Model.load(tiny_bundle)
    ids = np.random.default_rng(0).integers(0, 60, size=(2, 9), dtype=np.int32)
    for name in ("window", "step", "chunk"):
        model = onnx.load(str(tiny_bundle / f"{name}.onnx"))
        assert any(n.op_type == "GRU" for n in model.graph.node)
        rewritten, count = gru_to_matmuls(model)
        assert count == 2 + m.config.rnn_layers       # embedding, router and RNN-expert GRUs
        assert not any(n.op_type == "GRU" for n in rewritten.graph.node)
        a = ort.InferenceSession(str(tiny_bundle / f"{name}.onnx"))
        b = ort.InferenceSession(rewritten.SerializeToString())
        # 9 tokens: first step + 8 Loop iterations; 1 token: no iteration; the step graph from a carried state too
        for chunk, seed in [(9, None), (1, None)] + ([(1, 3), (2, 4)] if name == "step" else []):
            x_, y_ = (s.run(None, _feeds(m.config, s, ids[:, :chunk], seed)) for s in (a, b))
            for x, y in zip(x_, y_):
                np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", ["tiny", "mid"])
def test_no_large_float_weight_left(size, ckpt_factory, tmp_path):
    if size == "tiny":
        cfg, limit = tiny_config(), 100          # every weight matrix here has >= 256 elements
    else:                                        # head 256x300 and GRU 256x768 exceed 65,536
        cfg, limit = tiny_config(vocab_size=300, embed_dim=64, rnn_units=256, router_units=32,
                                 rnn_layers=1, ffn_dim=128, max_positions=128), LARGE_FLOAT_LIMIT
    out = _export(ckpt_factory(cfg, seed=3), tmp_path / "b.mof", cfg, int8=True, allow_degraded=True,
                  full=False, window_graph=False)
    manifest = verify_bundle(out)
    for name in INT8_FILES:
        fp32 = onnx.load(str(out / manifest["graphs"][name]["fp32"]))
        int8 = onnx.load(str(out / manifest["graphs"][name]["int8"]))
        assert large_float_initializers(fp32, limit), "the check must see the fp32 weights"
        assert large_float_initializers(int8, limit) == []
        assert not any(n.op_type == "GRU" for n in int8.graph.node)
    assert manifest["int8"]["quantization"]["weights"].startswith("int8")
    assert manifest["int8"]["quantization"]["name"] == "rowwise-u8s8" and "reduce_range" not in manifest["int8"]["quantization"]
    assert manifest["int8"]["accuracy"]["measured_on"]["cpu"]["machine"]


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _export_trained(family: str, out: Path, **kw) -> Path:
    """A tiny trained checkpoint (tests/fixtures/trained_*: realistic, non-random weights; made by
    tests/helpers/make_trained_fixtures.py) exported with the step, chunk and decode graphs only.

    The built-in text it was trained on is also what int8 is measured on: 550 characters are too
    few for a held-out split to mean anything (a held-out third gave perplexity in the tens of
    thousands), and what is gated here is int8's agreement with fp32, not the model's quality."""
    return export_bundle(FIXTURES / TRAINED[family], out, num_heads=4, trans_window=24, window=32,
                         eval_tokens=200, full=False, window_graph=False, **kw)


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory):
    """The tiny trained T6, exported in fp32 (mof-quantize adds int8 in the tests)."""
    return _export_trained("t6", tmp_path_factory.mktemp("tb") / "trained.mof")


def test_int8_meets_the_gates_on_a_trained_model(trained_bundle, tmp_path, capsys):
    copy = tmp_path / "b.mof"
    shutil.copytree(trained_bundle, copy)
    assert quantize_main([str(copy), "--eval-tokens", "400"]) == 0
    m = verify_bundle(copy)
    acc = m["int8"]["accuracy"]
    for mode in ("exact", "stream"):
        print(mode, {k: acc[mode][k] for k in ("top1_agreement", "perplexity_change", "mean_kl")})
        assert acc[mode]["passed"]
        assert acc[mode]["top1_agreement"] >= 0.95 and acc[mode]["perplexity_change"] <= 0.05
    assert m["recommended_mode"] in ("stream", "exact")
    text = "".join(Generator(Model.load(copy, int8=True), "床前", SamplingConfig(seed=0, max_tokens=20)))
    assert len(text) == 20
    # mof-quantize recorded int8's references beside the export's fp32 ones, and they reproduce
    assert sorted(m["self_check"]["precisions"]) == ["fp32", "int8"]
    assert m["self_check"]["precisions"]["fp32"]["recorded_by"] == "mof-export"
    assert Model.load(copy, int8=True, self_check=True).self_check_result.max_abs_diff == 0.0
    # re-measured on this machine in one command: the same table (same text, same graphs, same CPU)
    capsys.readouterr()
    assert quantize_main(["--check", str(copy), "--eval-tokens", "400"]) == 0
    out = capsys.readouterr().out
    assert "measured on:" in out and "recorded in the manifest" in out and "another text" not in out
    assert f"{acc['exact']['top1_agreement']:.1%}" in out


def test_mof_quantize_is_atomic_and_gated(trained_bundle, tmp_path, capsys, monkeypatch):
    copy = tmp_path / "b.mof"
    shutil.copytree(trained_bundle, copy)
    before = verify_bundle(copy)["files"]
    import mof.measure.gates as gates
    monkeypatch.setattr(gates, "QUANT_MIN_TOP1", 1.01)         # an impossible gate
    assert quantize_main([str(copy), "-q"]) == 1
    err = capsys.readouterr().err
    assert "below the gates" in err and "--allow-degraded" in err and "Traceback" not in err
    assert verify_bundle(copy)["files"] == before               # unchanged
    assert [p.name for p in tmp_path.iterdir()] == ["b.mof"]    # no temp litter
    assert quantize_main([str(copy), "-q", "--allow-degraded"]) == 0
    m = verify_bundle(copy)
    assert m["graphs"]["step"]["int8"] == "step.int8.onnx" and not m["int8"]["accuracy"]["passed"]
    assert set(before) < set(m["files"])
    assert quantize_main([str(copy), "-q"]) == 1                 # already has int8: needs --force
    assert "--force" in capsys.readouterr().err


def test_not_a_bundle(tmp_path, capsys):
    assert quantize_main([str(tmp_path)]) == 1
    assert "not a mof bundle" in capsys.readouterr().err


def test_t7_every_gru_and_large_weight_int8(tiny_t7_bundle):
    """T7: four GRU kinds (embedding, router, temperature expert, RNN expert) rewritten, no weight
    of 100+ floats left in float, and the rewrite computes the same function."""
    m = Model.load(tiny_t7_bundle)
    manifest = verify_bundle(tiny_t7_bundle)
    ids = np.random.default_rng(1).integers(0, 60, size=(2, 9), dtype=np.int32)
    for name in INT8_FILES:
        fp32 = onnx.load(str(tiny_t7_bundle / manifest["graphs"][name]["fp32"]))
        int8 = onnx.load(str(tiny_t7_bundle / manifest["graphs"][name]["int8"]))
        rewritten, count = gru_to_matmuls(fp32)
        assert count == 3 + m.config.rnn_layers
        a, b = ort.InferenceSession(fp32.SerializeToString()), ort.InferenceSession(rewritten.SerializeToString())
        for x, y in zip(a.run(None, _feeds(m.config, a, ids)), b.run(None, _feeds(m.config, b, ids))):
            np.testing.assert_allclose(x, y, atol=1e-5, rtol=0)
        assert large_float_initializers(fp32, 100) and large_float_initializers(int8, 100) == []
        assert not any(n.op_type == "GRU" for n in int8.graph.node)
    assert manifest["int8"]["quantization"]["name"] == "rowwise-u8s8"
    assert {"exact", "stream"} <= set(manifest["int8"]["accuracy"])


@pytest.fixture(scope="module")
def trained_t7_bundle(tmp_path_factory):
    """The tiny trained T7 (L = 1, L2 = 2, temperature expert), exported with int8 graphs: the
    accuracy gates on realistic weights."""
    return _export_trained("t7", tmp_path_factory.mktemp("tb7") / "trained-t7.mof", int8=True)


def test_t7_int8_meets_the_gates_on_a_trained_model(trained_t7_bundle):
    m = verify_bundle(trained_t7_bundle)
    assert m["model"]["family"] == "t7"
    acc = m["int8"]["accuracy"]
    for mode in ("exact", "stream"):
        print("T7", mode, {k: acc[mode][k] for k in ("top1_agreement", "perplexity_change", "mean_kl")})
        assert acc[mode]["passed"]
        assert acc[mode]["top1_agreement"] >= 0.95 and acc[mode]["perplexity_change"] <= 0.05
    text = "".join(Generator(Model.load(trained_t7_bundle, int8=True), "床前", SamplingConfig(seed=0, max_tokens=20)))
    assert len(text) == 20
