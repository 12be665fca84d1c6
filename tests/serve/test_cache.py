"""The state cache: longest-prefix lookup, LRU by bytes, and its folder read back and checked."""

from __future__ import annotations

import numpy as np
import pytest

from mof.runtime.decoder import StreamDecoder

pytest.importorskip("prometheus_client", reason="mof-serve needs the [serve] extra")

from mof.serve.cache import Entry, StateCache  # noqa: E402


def entry(model, text: str, R: int = 16) -> Entry:
    dec = StreamDecoder(model, R)
    dec.feed(model.vocab.encode(text))
    return Entry(text, dec.snapshot())


def test_lookup_finds_the_longest_proper_prefix_with_the_same_R(demo_model):
    cache = StateCache(1 << 20, "id", demo_model.config)
    for text in ("床前", "床前明月光，", "春眠"):
        cache.put(entry(demo_model, text))
    assert cache.lookup("床前明月光，疑是", 16).text == "床前明月光，"
    assert cache.lookup("床前明", 16).text == "床前"
    assert cache.lookup("床前明月光，", 16).text == "床前"          # a proper prefix: something is new
    assert cache.lookup("床前明月光，疑是", 8) is None                # another R: its counter means else
    assert cache.lookup("夜来", 16) is None
    assert (cache.hits, cache.misses) == (3, 2)


def test_least_recently_used_goes_first_within_the_byte_bound(demo_model):
    one = entry(demo_model, "床前明月光，")
    cache = StateCache(2 * one.nbytes + 8, "id", demo_model.config)
    cache.put(one)
    cache.put(entry(demo_model, "春眠不觉晓，"))
    assert cache.lookup("床前明月光，疑", 16) is not None         # now the most recently used
    cache.put(entry(demo_model, "白日依山尽，"))
    assert len(cache) == 2 and cache.bytes <= cache.max_bytes
    assert cache.lookup("春眠不觉晓，处", 16) is None
    assert cache.lookup("床前明月光，疑", 16) is not None


def test_folder_round_trip_and_bad_files_are_skipped(demo_model, tmp_path, caplog):
    cache = StateCache(1 << 20, "model-a", demo_model.config, tmp_path)
    e = entry(demo_model, "床前明月光，")
    cache.put(e)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and len(files[0].stem) == 64
    (tmp_path / ("0" * 64 + ".npz")).write_bytes(b"junk")              # not an npz
    (tmp_path / ("1" * 64 + ".npz")).write_bytes(files[0].read_bytes())  # name is not its content's hash
    again = StateCache(1 << 20, "model-a", demo_model.config, tmp_path)
    got = again.lookup("床前明月光，疑", 16)
    assert got is not None and got.snapshot.ids == e.snapshot.ids and got.snapshot.since_refill == e.snapshot.since_refill
    for name in e.snapshot.state.names:
        np.testing.assert_array_equal(getattr(got.snapshot.state, name), getattr(e.snapshot.state, name))
    assert len(again) == 1 and caplog.text.count("skipping") == 2
    other = StateCache(1 << 20, "model-b", demo_model.config, tmp_path)      # another model's states
    assert len(other) == 0 and "another model" in caplog.text


def test_evicted_entries_leave_the_folder(demo_model, tmp_path):
    one = entry(demo_model, "床前明月光，")
    cache = StateCache(one.nbytes + 8, "id", demo_model.config, tmp_path)
    cache.put(one)
    cache.put(entry(demo_model, "春眠不觉晓，"))
    assert len(list(tmp_path.glob("*.npz"))) == 1 and len(cache) == 1


def test_a_file_in_the_layout_earlier_servers_wrote_still_loads(demo_model, tmp_path):
    """The folder's format is unchanged: meta fields text, refill_every, since_refill, ids."""
    import hashlib
    from mof.runtime.files import write_state_npz
    from mof.serve.cache import FORMAT, VERSION
    e = entry(demo_model, "床前明月光，", R=8)
    digest = hashlib.sha256(f"8\n{e.text}".encode("utf-8")).hexdigest()
    write_state_npz(tmp_path / f"{digest}.npz", {"format": FORMAT, "version": VERSION, "model": "m", "text": e.text,
                                                 "refill_every": 8, "since_refill": e.snapshot.since_refill,
                                                 "ids": list(e.snapshot.ids)}, e.snapshot.state)
    got = StateCache(1 << 20, "m", demo_model.config, tmp_path).lookup("床前明月光，疑", 8)
    assert got is not None and (got.refill_every, got.snapshot.ids, got.snapshot.since_refill) == (8, e.snapshot.ids, e.snapshot.since_refill)
    again = StreamDecoder.restore(demo_model, got.snapshot)
    np.testing.assert_array_equal(again.feed([5]), StreamDecoder.restore(demo_model, e.snapshot).feed([5]))


def test_a_text_that_is_not_unicode_is_kept_without_raising(demo_model, tmp_path):
    """A lone surrogate in a conversation's text made the key hashing raise (and the row was
    never answered). Its key hashes (the server refuses such text with a 400 before it gets here;
    the cache must not be where a request dies), and its file is read back."""
    cache = StateCache(1 << 20, "id", demo_model.config, tmp_path)
    cache.put(entry(demo_model, "a\ud800b"))
    assert cache.lookup("a\ud800bc", 16).text == "a\ud800b"
    again = StateCache(1 << 20, "id", demo_model.config, tmp_path)
    assert again.lookup("a\ud800bc", 16).text == "a\ud800b"
