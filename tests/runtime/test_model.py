"""Model.load / prefill / step / exact_logits: contracts and invariances (on the demo bundle; no TensorFlow)."""

import json

import numpy as np
import pytest

from mof.runtime import Model
from mof.runtime.errors import BundleError, MofError
from mof.runtime.state import State


@pytest.fixture(scope="module")
def ids(model):
    """Two rows of 30 token ids (shorter than the demo's window W = 64)."""
    return np.random.default_rng(5).integers(0, model.config.vocab_size, size=(2, 30), dtype=np.int32)


def _close(a, b, atol=1e-4):
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


def test_prefill_equals_steps_equals_chunks(model, ids):
    whole, s_whole = model.prefill(ids)
    for chunks in ([1] * 30, [3, 1, 7, 2, 17], [29, 1]):
        state, at = model.initial_state(2), 0
        for c in chunks:
            logits, state = model.step(ids[:, at:at + c], state)
            at += c
        _close(logits, whole)
        for (name, a), (_, b) in zip(state.tensors(), s_whole.tensors()):
            _close(a, b)
    assert list(s_whole.position) == [30, 30]


def test_batch_rows_equal_single_rows(model, ids):
    both, s = model.prefill(ids)
    for row in range(2):
        one, s1 = model.prefill(ids[row])
        _close(one[0], both[row])
        _close(s1.rnn_h[:, 0], s.rnn_h[:, row])


def test_step_never_mutates_the_callers_state(model, ids):
    _, state = model.prefill(ids[:, :5])
    before = {k: v.copy() for k, v in state.tensors()}
    model.step(ids[:, 5], state)
    model.step(ids[:, 5:9], state)
    for k, v in state.tensors():
        np.testing.assert_array_equal(v, before[k])


def test_snapshot_restore_continues_identically(model, ids):
    _, state = model.prefill(ids[:, :10])
    restored = State.from_bytes(state.to_bytes(), model.config)
    a, _ = model.step(ids[:, 10:20], state)
    b, _ = model.step(ids[:, 10:20], restored)
    np.testing.assert_array_equal(a, b)
    floats = sum(a.size for name, a in state.tensors() if name != "position")
    assert floats == 2 * 864                       # the demo's state: 864 floats per sequence
    assert len(state.to_bytes()) < 4 * floats + 2048


def test_exact_logits_reads_only_the_last_window(model):
    W = model.config.window
    ids = np.random.default_rng(6).integers(0, model.config.vocab_size, size=(2, W + 20), dtype=np.int32)
    a = model.exact_logits(ids)
    b = model.exact_logits(ids[:, -W:])
    np.testing.assert_array_equal(a, b)
    c = model.exact_logits(ids[:, :5])
    assert not np.allclose(a, c)


def test_stream_equals_exact_for_the_first_token(model, ids):
    a, _ = model.prefill(ids[:, :1])
    _close(a, model.exact_logits(ids[:, :1]))


@pytest.mark.parametrize("bad, message", [
    (lambda s: s.with_updates(rnn_h=np.zeros((2, 2, 5), np.float32)), r"state.rnn_h is \(\(2, 2, 5\)"),
    (lambda s: s.with_updates(emb_h=s.emb_h.astype(np.float64)), "float64"),
])
def test_state_shape_errors_say_actual_and_expected(model, ids, bad, message):
    _, state = model.prefill(ids[:, :3])
    with pytest.raises(MofError, match=message):
        model.step(ids[:, 3], bad(state))


def test_bad_ids(model):
    V = model.config.vocab_size
    with pytest.raises(MofError, match=rf"lie in \[0, {V}\)"):
        model.prefill([[1, V]])
    with pytest.raises(MofError, match="integers"):
        model.prefill(np.array([[1.5]]))
    with pytest.raises(MofError, match="shape"):
        model.prefill(np.zeros((1, 0), np.int32))


def test_position_table_limit_is_an_error_not_garbage(model):
    P = model.config.max_positions
    _, state = model.prefill(np.ones((1, P), np.int32))
    with pytest.raises(MofError, match="position table"):
        model.step([1], state)


def test_int8_without_int8_graphs(fp32_bundle):
    with pytest.raises(MofError, match="mof-quantize"):
        Model.load(fp32_bundle, int8=True)
    Model.load(fp32_bundle)                       # the fp32 graphs are all there


def test_load_verifies_hashes(demo_bundle, tmp_path):
    import shutil
    copy = tmp_path / "b"
    shutil.copytree(demo_bundle, copy)
    data = bytearray((copy / "step.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "step.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        Model.load(copy)


def test_manifest_describes_the_step_graph(demo_bundle, model):
    m = json.loads((demo_bundle / "manifest.json").read_text(encoding="utf-8"))
    step = m["graphs"]["step"]
    names_in = [t["name"] for t in step["inputs"]]
    assert names_in[:2] == ["input_ids", "position"]
    assert [f["input"] for f in m["state"]["fields"]] == names_in[2:]
    assert [f["output"] for f in m["state"]["fields"]] == [t["name"] for t in step["outputs"]][1:]
    sess = model.sessions["decode"]                  # what decoding loads: step's inputs + refill
    assert sorted(i.name for i in sess.get_inputs()) == sorted(names_in + ["refill"])
    assert [t["name"] for t in m["graphs"]["decode"]["inputs"]] == names_in + ["refill"]
    step_only = Model.load(demo_bundle, graphs=("step",)).sessions["step"]
    assert sorted(i.name for i in step_only.get_inputs()) == sorted(names_in)
    assert m["state"]["bytes_per_sequence"] == 4 * m["state"]["floats_per_sequence"]
    assert m["validation"]["step"]["passed"]
    assert m["recommended_mode"] in ("stream", "exact")


def test_a_graph_that_is_not_what_its_name_declares_is_refused(demo_bundle):
    """Model.load checks every graph it opens against mof.runtime.contract.graph_io (names and
    order, dtypes, the config's sizes) and the manifest's names against it too (model._check_io)."""
    import copy

    from mof.runtime.contract import graph_io
    from mof.runtime.manifest import Manifest
    from mof.runtime.model import _check_io
    loaded = Model.load(demo_bundle, graphs=("step", "chunk"), threads=1)
    step, chunk, manifest = loaded.sessions["step"], loaded.sessions["chunk"], loaded.manifest
    _check_io(step, manifest, "step", "b/step.onnx")                # each is what its name says
    _check_io(chunk, manifest, "chunk", "b/chunk.onnx")
    n = len(graph_io("step", manifest.config).inputs)
    with pytest.raises(BundleError, match=rf"^b: input {n} is missing; a decode graph's is refill tensor\(bool\) \[\]$"):
        _check_io(step, manifest, "decode", "b")
    with pytest.raises(BundleError, match=r"input 1 is missing; a step graph's is position tensor\(int64\)"):
        _check_io(chunk, manifest, "step", "b")
    raw = copy.deepcopy(dict(manifest))
    V = raw["model"]["vocab_size"]
    raw["model"]["vocab_size"] = V + 1                               # the graph's logits are [batch, V]
    with pytest.raises(BundleError, match=rf"output 0 is logits tensor\(float\) \['batch', {V}\]; "
                                          rf"a step graph's is logits tensor\(float\) \['batch', {V + 1}\]"):
        _check_io(step, Manifest(raw, "b"), "step", "b")
    raw = copy.deepcopy(dict(manifest))
    raw["graphs"]["step"]["inputs"][1]["name"] = "pos"
    with pytest.raises(BundleError, match="the manifest names the step graph's inputs"):
        _check_io(step, Manifest(raw, "b"), "step", "b")


def test_freed_memory_is_handed_back_after_long_reads_only(model, monkeypatch):
    """runtime/memory.py: malloc_trim after a call that read >= TRIM_MIN_TOKENS tokens (a long
    prompt), not after steps or refills (it would slow them: the memory is faulted in again)."""
    import mof.runtime.memory as memory
    calls = []
    monkeypatch.setattr(memory, "_TRIM", lambda pad: calls.append(pad) or 1)
    ids = np.arange(memory.TRIM_MIN_TOKENS) % model.config.vocab_size
    _, state = model.refill(ids[:model.config.window])
    model.step(ids[:1], state)
    assert calls == []
    model.prefill(ids)
    assert calls == [0]
