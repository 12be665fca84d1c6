"""DecoderSnapshot: the one form of what a stream decoder has read, as session files and the
server's state cache keep it; a decoder restored from one goes on exactly as the original."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mof.runtime import SamplingConfig
from mof.runtime.decoder import DecoderSnapshot, StreamDecoder
from mof.runtime.errors import MofError
from mof.runtime.files import write_state_npz
from mof.runtime.chat_session import SAVE_FORMAT, SAVE_VERSION, ChatSession
from mof.runtime.state import State


def _read(model, text, R=4):
    dec = StreamDecoder(model, R)
    dec.feed(model.vocab.encode(text))
    return dec


def test_a_restored_decoder_goes_on_exactly_as_the_original(model):
    original = _read(model, "床前明月光，疑是地上霜。")
    snap = original.snapshot()
    assert (snap.refill_every, snap.since_refill, snap.ids) == (4, original.since_refill, tuple(original.ids))
    restored = StreamDecoder.restore(model, snap)
    before = original.refills                                    # the prompt's
    for tok in model.vocab.encode("举头望明月，低头思故乡。"):      # crosses several refills (R = 4)
        np.testing.assert_array_equal(restored.feed([tok]), original.feed([tok]))
        assert restored.since_refill == original.since_refill
    assert restored.refills == original.refills - before >= 2
    assert snap.ids == tuple(model.vocab.encode("床前明月光，疑是地上霜。"))     # kept as it was taken


def test_snapshot_needs_a_read(model):
    with pytest.raises(MofError, match="nothing has been read yet"):
        StreamDecoder(model, 4).snapshot()


def test_meta_round_trip_and_without_ids(model):
    snap = _read(model, "春眠不觉晓，").snapshot()
    meta = json.loads(json.dumps(snap.to_meta()))                # what a file holds
    assert set(meta) == {"refill_every", "since_refill", "ids"}
    again = DecoderSnapshot.from_meta(meta, snap.state, model.config.vocab_size)
    assert (again.ids, again.since_refill, again.refill_every) == (snap.ids, snap.since_refill, snap.refill_every)
    assert set(snap.to_meta(ids=False)) == {"refill_every", "since_refill"}


@pytest.mark.parametrize("change, words", [
    ({"refill_every": "4"}, "bad refill_every"),
    ({"refill_every": True}, "bad refill_every"),
    ({"since_refill": -1}, "bad since_refill"),
    ({"since_refill": 1.5}, "bad since_refill"),
    ({"ids": []}, "bad ids"),
    ({"ids": "12"}, "bad ids"),
    ({"ids": [10 ** 9]}, "bad ids"),
    ({"ids": [1, False]}, "bad ids"),
])
def test_bad_meta_fields_are_refused(model, change, words):
    snap = _read(model, "春眠不觉晓，").snapshot()
    with pytest.raises(MofError, match=words):
        DecoderSnapshot.from_meta({**snap.to_meta(), **change}, snap.state, model.config.vocab_size)


def test_a_state_of_two_rows_is_refused(model):
    snap = _read(model, "春眠").snapshot()
    two = State.stack([snap.state, snap.state], model.config)
    with pytest.raises(MofError, match="one row"):
        DecoderSnapshot.from_meta(snap.to_meta(), two, model.config.vocab_size)


def _turns(session, texts):
    out = []
    for text in texts:
        gen = session.turn(text)
        out.append("".join(gen))
        session.finish(gen)
    return out


def test_a_saved_session_goes_on_the_same_and_one_without_its_r_is_refused(model, tmp_path):
    sampling = SamplingConfig(max_tokens=6, seed=3, temperature=1.0)
    session = ChatSession(model, sampling, "stream", form="chat", refill_every=4)
    _turns(session, ["第一句"])
    no_r = tmp_path / "no_r.npz"
    write_state_npz(no_r, {"format": SAVE_FORMAT, "version": SAVE_VERSION, "model": model.manifest.network_identity,
                           "form": "chat", "history": session.conversation.history, "consumed": session.consumed,
                           "has_state": True, "since_refill": session.decoder.since_refill}, session.state)
    new = tmp_path / "new.npz"
    session.save(new)
    want = _turns(session, ["第二句"])
    again = ChatSession(model, sampling, "stream", form="chat", refill_every=4)
    again.load(new)
    assert _turns(again, ["第二句"]) == want
    with pytest.raises(MofError, match=f"{no_r}: bad refill_every None"):
        ChatSession(model, sampling, "stream", form="chat", refill_every=4).load(no_r)


def test_a_session_file_with_a_bad_counter_is_refused_naming_the_file(model, tmp_path):
    session = ChatSession(model, SamplingConfig(max_tokens=3, seed=0), "stream", form="chat")
    _turns(session, ["你好"])
    bad = tmp_path / "bad.npz"
    write_state_npz(bad, {"format": SAVE_FORMAT, "version": SAVE_VERSION, "model": model.manifest.network_identity,
                          "form": "chat", "history": session.conversation.history, "consumed": session.consumed,
                          "has_state": True, "refill_every": 4, "since_refill": "3"}, session.state)
    with pytest.raises(MofError, match=f"{bad}: bad since_refill"):
        ChatSession(model, SamplingConfig(), "stream", form="chat").load(bad)
