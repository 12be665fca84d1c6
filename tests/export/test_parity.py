"""Exported graphs compute what the trained TF model computes, for every T6 shape we can think of."""

import zlib

import numpy as np
import onnxruntime as ort
import pytest

from mof_testing import export_bundle, reference_model, tiny_config
from mof.runtime.bundle import verify_bundle
from mof.runtime.contract import INPUT_IDS
from mof.runtime.errors import MofError
from mof.runtime.manifest import model_config

pytestmark = pytest.mark.tf

SHAPES = {
    "n1-L0": dict(rnn_layers=1, trans_layers=0, ffn_dim=16),
    "n2-L1-dff2": dict(rnn_layers=2, trans_layers=1, ffn_dim=32),
    "n1-L3-dff1": dict(rnn_layers=1, trans_layers=3, ffn_dim=16),
    "n2-L3-dff2-H2": dict(rnn_layers=2, trans_layers=3, ffn_dim=32, num_heads=2,
                          trans_window=5, window=16),
}


def _export(prefix, out, cfg, **kw):
    return export_bundle(prefix, out, cfg, eval_tokens=48, **kw)


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_bundle_matches_tensorflow(shape, ckpt_factory, tmp_path):
    cfg = tiny_config(**SHAPES[shape])
    prefix = ckpt_factory(cfg, seed=zlib.crc32(shape.encode()) % 1000)   # the same weights in every run
    out = _export(prefix, tmp_path / "b.mof", cfg)
    manifest = verify_bundle(out)
    assert model_config(manifest) == cfg

    report = manifest["validation"]
    assert report["passed"] and report["max_abs_diff"] <= 1e-4
    seqs = {c["seq"] for c in report["cases"]}
    assert {1, 2, cfg.trans_window - 1, cfg.trans_window, cfg.trans_window + 3,
            cfg.window} <= seqs
    assert {c["batch"] for c in report["cases"]} == {1, 3}
    assert {c["graph"] for c in report["cases"]} == {"full", "window", "chunk"}
    chunk = report["chunk"]
    assert chunk["passed"] and chunk["max_rel_diff"] <= 1e-4
    assert {c["seq"] for c in chunk["cases"]} == {c["seq"] for c in report["cases"]}
    decode = report["decode"]                  # step and chunk in one graph: their results, exactly
    assert decode["passed"] and decode["max_abs_diff"] == 0.0
    assert {c["seq"] for c in decode["cases"]} == {c["seq"] for c in report["cases"]}

    step = report["step"]
    assert step["passed"] and step["max_abs_diff"] <= 1e-4
    checks = {c["check"] for c in step["cases"]}
    assert {"oracle", "token by token", "chunks 1,2,7"} <= checks
    assert ("tensorflow" in checks) == (cfg.trans_layers == 0)
    assert manifest["recommended_mode"] == manifest["stream"]["recommended_mode"]
    assert manifest["recommended_refill_every"] == manifest["stream"]["recommended_refill_every"]
    policies = [p["policy"] for p in manifest["stream"]["policies"]]
    assert policies[0] == "plain" and policies[-1] == "exact" and len(policies) >= 3

    # Independent of the export's own report: fresh TF model, fresh sessions, new ids.
    model = reference_model(cfg, prefix)
    full = ort.InferenceSession(str(out / manifest["graphs"]["full"]["fp32"]))
    window = ort.InferenceSession(str(out / manifest["graphs"]["window"]["fp32"]))
    rng = np.random.default_rng(123)
    for seq in (1, 3, cfg.trans_window, cfg.trans_window + 1, cfg.trans_window + 7):
        ids = rng.integers(0, cfg.vocab_size, size=(2, seq), dtype=np.int32)
        want = model(ids, training=False).numpy()
        got_full = full.run(None, {INPUT_IDS: ids})[0]
        got_last = window.run(None, {INPUT_IDS: ids})[0]
        assert got_full.shape == (2, seq, cfg.vocab_size)
        assert got_last.shape == (2, cfg.vocab_size)
        np.testing.assert_allclose(got_full, want, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got_last, want[:, -1], atol=1e-4, rtol=0)
    # Past the crop, the transformer output is end-padded: the quirk is in the graph too.
    assert np.abs(want[:, -1]).max() > 0


def _nudge_first(init, delta: float) -> None:
    """Add ``delta`` to the first element of an ONNX initializer, in place."""
    from onnx import numpy_helper
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += delta
    init.CopyFrom(numpy_helper.from_array(arr, init.name))


def test_a_wrong_graph_fails_validation_and_writes_nothing(ckpt_factory, tmp_path, monkeypatch):
    import mof.export.convert as convert
    cfg = tiny_config()
    prefix = ckpt_factory(cfg)
    real = convert.to_onnx

    def sabotaged(fn, out_shape, *, is_keras):
        model = real(fn, out_shape, is_keras=is_keras)
        if not is_keras:   # logit 0 of every row moves by 1e-3, ten times the tolerance
            # (the output bias, found by its shape: tf2onnx's names and order vary between runs)
            bias = next(t for t in model.graph.initializer if list(t.dims) == [cfg.vocab_size])
            _nudge_first(bias, 1e-3)
        return model

    monkeypatch.setattr(convert, "to_onnx", sabotaged)
    with pytest.raises(MofError, match="parity check failed.*no bundle written"):
        _export(prefix, tmp_path / "b.mof", cfg, full=False)       # the window graph is enough
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_step_graph_fails_validation(ckpt_factory, tmp_path, monkeypatch):
    import mof.export.step_graph as sg
    cfg = tiny_config()
    prefix = ckpt_factory(cfg)
    real = sg.build_step_graph

    def sabotaged(config, get):
        model = real(config, get)
        # tilt the router towards the RNN expert
        _nudge_first(next(t for t in model.graph.initializer if t.name == "/router/dense/bias"), 0.5)
        return model

    monkeypatch.setattr(sg, "build_step_graph", sabotaged)
    with pytest.raises(MofError, match="parity check failed"):
        _export(prefix, tmp_path / "b.mof", cfg, full=False, window_graph=False)
    assert list(tmp_path.iterdir()) == []
