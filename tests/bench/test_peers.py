"""benchmarks/peers.py without its peer runtimes: the einsum rewrite LiteRT's conversion needs (against
xiaothink's own layer, and through TFLite's converter with builtin ops only), the orchestration of
worker processes on the demo bundle (mof's contenders), the report table, and its errors."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from mof_testing import script_module

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    with script_module(PEERS) as module:
        yield module


@pytest.mark.tf
def test_outer_product_einsum_is_xiaothinks_attention(peers):
    """The rewrite gives xiaothink's LinearMultiHeadAttention the same outputs with the same weights,
    in eager mode and traced, and leaves no einsum summing over two letters in the traced graph."""
    from mof.export._tf import import_tf, import_xiaothink_build_model
    tf = import_tf()
    bm = import_xiaothink_build_model()
    layer = bm.LinearMultiHeadAttention(embed_dim=16, num_heads=4)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 7, 16)).astype(np.float32))
    layer(x)                                                    # builds it
    for v in layer.weights:                                     # away from the initialisers' zeros
        v.assign(v + np.random.default_rng(2).normal(0, 0.3, v.shape).astype(np.float32))
    ref = layer(x).numpy()

    def traced_equations(fn):
        graph = tf.function(fn).get_concrete_function(x).graph
        return [op.get_attr("equation").decode() for op in graph.get_operations() if op.type == "Einsum"]

    assert peers.KV_EQUATION in [e.replace(" ", "") for e in traced_equations(layer)]
    with peers.outer_product_einsum() as proxy:
        eager = layer(x).numpy()
        traced = tf.function(lambda t: layer(t))(x).numpy()
        equations = [e.replace(" ", "") for e in traced_equations(layer)]
    assert proxy.rewrites >= 2
    assert peers.KV_EQUATION not in equations and equations      # the other two einsums stay
    assert np.abs(eager - ref).max() < 1e-5 * max(1.0, np.abs(ref).max())
    assert np.abs(traced - ref).max() < 1e-5 * max(1.0, np.abs(ref).max())
    assert bm.tf is tf                                           # restored on exit
    assert peers.KV_EQUATION in [e.replace(" ", "") for e in traced_equations(layer)]


@pytest.mark.tf
def test_tflite_builtin_ops_need_the_rewrite(peers):
    """TFLite's converter with builtin ops only: xiaothink's attention layer fails on the einsum as it is,
    converts with the rewrite, and then gives the layer's outputs (TensorFlow's own TFLite interpreter:
    no extra needed). The whole model's conversion is benchmarks/peers.py's own (minutes, not a test)."""
    from mof.export._tf import import_tf, import_xiaothink_build_model
    tf = import_tf()
    layer = import_xiaothink_build_model().LinearMultiHeadAttention(embed_dim=16, num_heads=4)
    x = np.random.default_rng(3).normal(size=(1, 7, 16)).astype(np.float32)
    layer(x)
    for v in layer.weights:
        v.assign(v + np.random.default_rng(4).normal(0, 0.3, v.shape).astype(np.float32))

    def convert():
        spec = tf.TensorSpec(x.shape, tf.float32)
        concrete = tf.function(lambda t: layer(t), input_signature=[spec]).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], layer)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()

    with pytest.raises(Exception, match="Einsum"):
        convert()
    with peers.outer_product_einsum():
        blob = convert()
    interp = tf.lite.Interpreter(model_content=blob)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    ref = layer(x).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-5 * max(1.0, np.abs(ref).max())


def test_mof_contenders_on_the_demo_bundle(peers, demo_bundle, tmp_path, capsys):
    """Two worker processes, interleaved rounds, the JSON and the table; no tf: no Δ column values."""
    out = tmp_path / "out"
    rc = peers.main(["--workdir", str(tmp_path / "w"), "--bundle", str(demo_bundle), "--rounds", "2",
                     "--tokens", "16", "--contenders", "mof-fp32,mof-int8", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "peers.json").read_text())
    assert [r["name"] for r in report["results"]] == ["mof-fp32", "mof-int8"]
    for r in report["results"]:
        assert len(r["ms"]) == 2 and 0 < r["min_ms"] <= r["median_ms"]
        assert "max_abs_diff_vs_tf" not in r
    assert report["machine"]["packages"]["onnxruntime"]
    assert "| mof | int8 |" in (out / "peers.md").read_text()
    # the saved logits are exact_logits' own
    from mof.runtime import Model
    ids = np.load(tmp_path / "w" / "peers" / "ids.npy")
    saved = np.load(tmp_path / "w" / "peers" / "logits.mof-fp32.npy")
    np.testing.assert_allclose(saved, Model.load(demo_bundle).exact_logits(ids)[0], atol=1e-5)
    # an untimed worker on the first contender ran before them (its logits, not in the report)
    spare = np.load(tmp_path / "w" / "peers" / "logits.spare.npy")
    np.testing.assert_array_equal(spare, saved)
    # a second run does not overwrite without --force
    rc = peers.main(["--workdir", str(tmp_path / "w"), "--bundle", str(demo_bundle), "--contenders",
                     "mof-fp32", "--out", str(out)])
    assert rc == 2 and "--force" in capsys.readouterr().err


def test_summary_and_table(peers):
    ref = np.array([1.0, -2.0, 3.0], np.float32)
    results = [{"name": "tf", "ms": [30.0, 10.0, 20.0], "_logits": ref},
               {"name": "litert-int8", "ms": [5.0, 4.0, 9.0], "_logits": ref + [0.0, 0.25, -0.5]},
               {"name": "openvino-default", "ms": [8.0], "_logits": ref, "note": "inference precision bf16"},
               {"name": "openvino-nncf-int8", "ms": [], "error": "worker openvino-nncf-int8 exited (1)"}]
    peers.summarize(results, ref)
    assert (results[0]["min_ms"], results[0]["median_ms"], results[0]["max_abs_diff_vs_tf"]) == (10.0, 20.0, 0.0)
    assert (results[1]["min_ms"], results[1]["median_ms"], results[1]["max_abs_diff_vs_tf"]) == (4.0, 5.0, 0.5)
    report = {"date": "2026-12-02", "tokens": 128, "seed": 0, "threads": 2, "rounds": 3,
              "model_type": "t6_beta_dense", "model": {"vocab_size": 16000}, "results": results,
              "command": "python benchmarks/peers.py --rounds 3",
              "machine": {"cpu": "Some CPU", "cores": 2, "python": "3.11.7",
                          "flags": {"avx2": True, "avx512_vnni": False},
                          "packages": {"openvino": "2026.4.1", "nncf": None}}}
    md = peers.render_md(report)
    lines = md.splitlines()
    assert "| TF Keras | fp32 | 20.0 | 10.0 | 1.00 | 0 |  |" in lines
    assert "| LiteRT (XNNPACK) | int8 | 5.0 | 4.0 | 4.00 | 5.0e-01 |  |" in lines
    assert "| OpenVINO (chunk.onnx) | default | 8.0 | 8.0 | 2.50 | 0 | inference precision bf16 |" in lines
    assert any(l.startswith("| OpenVINO (chunk.onnx) | nncf int8 | – |") and "exited (1)" in l for l in lines)
    assert "Some CPU (2 cores; avx2)" in md and "openvino 2026.4.1" in md and "nncf" not in md.split("|")[0]
    assert "Reproduce: `python benchmarks/peers.py --rounds 3`." in lines
    assert peers.command_args(["--rounds", "3", "--note", "a b", "--force", "--note=c"]) == ["--rounds", "3"]


def test_errors_are_one_line(peers, tmp_path, capsys, monkeypatch):
    assert peers.main(["--contenders", "mof-fp32,onnx-magic", "--out", str(tmp_path)]) == 2
    assert "unknown contender(s) onnx-magic" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert peers.main(["--contenders", "openvino-f32", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "openvino is not installed" in err and ".[peers]" in err
    assert peers.main(["--contenders", "mof-fp32", "--settle", "-1", "--out", str(tmp_path)]) == 2
    assert "--settle must be between 0 and 60 seconds" in capsys.readouterr().err
    missing = tmp_path / "nowhere.onnx"
    assert peers.main(["--contenders", "mof-fp32", "--openvino-graph", str(missing), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--openvino-graph {missing}: no such file" in err
    assert not list(tmp_path.iterdir())                          # nothing written
