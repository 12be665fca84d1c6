"""The T7 family (MoEModel_t7): recognised by its shapes, rebuilt with xiaothink's code, exported with
the same checks as T6 (docs/network.md, "T7")."""

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest

from mof.export import oracle
from mof.export.checkpoint import list_variables, read_shape_facts, resolve_config
from mof_testing import export_bundle, tiny_t7_config
from mof.runtime import Model
from mof.runtime.bundle import verify_bundle
from mof.runtime.contract import INPUT_IDS
from mof.runtime.errors import MofError
from mof.runtime.manifest import model_config

pytestmark = pytest.mark.tf

BARE = dict(embed_gru=False, rnn_layers=1, trans_layers=1, trans_layers_2=2)   # t7_cpu_standard's shape


def test_shapes_say_t7_and_its_sizes(tiny_t7_ckpt, ckpt_factory):
    facts = read_shape_facts(list_variables(tiny_t7_ckpt))
    assert (facts.family, facts.trans_layers, facts.ffn_dim, facts.trans_layers_2, facts.ffn_dim_2,
            facts.embed_gru) == ("t7", 2, 32, 3, 16, True)
    assert resolve_config(facts, num_heads=4, trans_window=6, window=12) == tiny_t7_config()
    bare = tiny_t7_config(**BARE)
    facts = read_shape_facts(list_variables(ckpt_factory(bare, seed=8)))
    assert not facts.embed_gru and resolve_config(facts, num_heads=4, trans_window=6, window=12) == bare


def test_model_type_checks_the_family(tiny_t7_ckpt, tiny_ckpt):
    t7 = read_shape_facts(list_variables(tiny_t7_ckpt))
    with pytest.raises(MofError, match="it is a T7 network.*t6_fast is T6"):
        resolve_config(t7, "t6_fast")
    with pytest.raises(MofError, match="it is a T6 network.*t7_small is T7"):
        resolve_config(read_shape_facts(list_variables(tiny_ckpt)), "t7_small")
    with pytest.raises(MofError, match=r"token_emb/embeddings has shape \[60, 16\], t7_small expects \[\*, 480\]"):
        resolve_config(t7, "t7_small")


def test_numpy_oracle_equals_tensorflow_at_every_position(tiny_t7_ckpt, tiny_t7_tf_model):
    """(The bare-embedding variant's oracle is checked through its export: step graph vs the oracle's
    stream definition, chunk graph vs TensorFlow and vs the oracle's window state.)"""
    cfg = tiny_t7_config()
    weights = oracle.load_weights(tiny_t7_ckpt, cfg)
    ids = np.random.default_rng(5).integers(0, cfg.vocab_size, size=(2, 15), dtype=np.int32)
    worst = 0.0
    for T in (1, 6, 7, 15):                            # around Wt = 6 and past W = 12
        want = tiny_t7_tf_model(ids[:, :T], training=False).numpy()
        worst = max(worst, float(np.abs(oracle.forward(weights, cfg, ids[:, :T]) - want).max()))
    print(f"T7 numpy oracle vs TensorFlow, every position, T in 1, 6, 7, 15: max |Δlogit| {worst:.2e}")
    assert worst <= 1e-5
    # the temperature expert really divides: without it the logits differ by far more than that
    plain = dataclasses.replace(weights, temperature=None)
    assert np.abs(oracle.forward(plain, cfg, ids) - want).max() > 1e-2


def test_t7_bundle_passes_every_check(tiny_t7_bundle, tiny_t7_ckpt, tiny_t7_tf_model):
    manifest = verify_bundle(tiny_t7_bundle)
    cfg = model_config(manifest)
    assert cfg == tiny_t7_config() and manifest["model"]["family"] == "t7"
    fields = {f["field"]: f["shape"] for f in manifest["state"]["fields"]}
    assert list(fields) == ["emb_h", "router_h", "temp_h", "rnn_h", "attn_z", "attn_u", "thought_c"]
    assert fields["temp_h"] == ["batch", 8] and fields["attn_z"] == [5, "batch", 4, 4]   # L + L2 blocks
    report = manifest["validation"]
    assert report["passed"] and report["max_abs_diff"] <= 1e-4 and "T7" in report["reference"]
    assert {c["graph"] for c in report["cases"]} == {"full", "window", "chunk"}
    assert {1, 2, 5, 6, 9, 12} <= {c["seq"] for c in report["cases"]}
    assert report["step"]["passed"] and report["chunk"]["passed"]
    assert {"oracle", "token by token", "chunks 1,2,7"} <= {c["check"] for c in report["step"]["cases"]}

    # Independent of the export's own report: fresh sessions, new ids, the reference's own model.
    full = ort.InferenceSession(str(tiny_t7_bundle / "full.onnx"))
    model = Model.load(tiny_t7_bundle)
    rng = np.random.default_rng(321)
    for seq in (1, 7, 12):
        ids = rng.integers(0, cfg.vocab_size, size=(2, seq), dtype=np.int32)
        want = tiny_t7_tf_model(ids, training=False).numpy()
        np.testing.assert_allclose(full.run(None, {INPUT_IDS: ids})[0], want, atol=1e-4, rtol=0)
        np.testing.assert_allclose(model.exact_logits(ids), want[:, -1], atol=1e-4, rtol=0)


def test_step_graph_equals_the_numpy_stream_definition_token_by_token(tiny_t7_bundle, tiny_t7_ckpt):
    model = Model.load(tiny_t7_bundle)
    cfg = model.config
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, size=(2, 20), dtype=np.int32)
    ref = oracle.stream_forward(oracle.load_weights(tiny_t7_ckpt, cfg), cfg, ids)    # [2, 20, V]
    state, worst = model.initial_state(2), 0.0
    for T in range(1, 21):
        logits, state = model.step(ids[:, T - 1], state)
        worst = max(worst, float(np.abs(logits - ref[:, T - 1]).max()))
    print(f"T7 step vs numpy stream oracle, T=1..20: max |Δlogit| {worst:.2e}")
    assert worst <= 1e-4
    exact = oracle.forward(oracle.load_weights(tiny_t7_ckpt, cfg), cfg, ids)
    assert np.abs(ref[:, -1] - exact[:, -1]).max() > 1e-3      # stream is its own definition


def test_bare_embedding_variant_exports(ckpt_factory, tmp_path):
    """t7_cpu_standard's shape (no embedding GRU: no emb_h in the state), chunk graph vs TensorFlow."""
    cfg = tiny_t7_config(**BARE)
    manifest = verify_bundle(export_bundle(ckpt_factory(cfg, seed=8), tmp_path / "b.mof", cfg, eval_tokens=24,
                                           full=False, window_graph=False))
    assert model_config(manifest) == cfg
    assert [f["field"] for f in manifest["state"]["fields"]][:3] == ["router_h", "temp_h", "rnn_h"]
    report = manifest["validation"]
    assert report["passed"] and {c["graph"] for c in report["cases"]} == {"chunk"}
    assert report["step"]["passed"] and report["chunk"]["passed"]
