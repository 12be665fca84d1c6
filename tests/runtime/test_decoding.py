"""resolve_decoding: the one place mode and R get their defaults and their checks, and every entry
point that takes them (make_decoder, Generator, StreamDecoder, ChatSession) goes through it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mof.runtime import Generator, SamplingConfig
from mof.runtime.decoder import ExactDecoder, StreamDecoder, make_decoder
from mof.runtime.decoding import API, CHAT, CLI, Decoding, DecodingError, resolve_decoding
from mof.runtime.errors import MofError
from mof.runtime.chat_session import ChatSession


def bundle(mode="stream", R=16, W=64):
    """What the resolver reads of a Model (or a Manifest): the recommendation and the window."""
    return SimpleNamespace(recommended_mode=mode, recommended_refill_every=R, config=SimpleNamespace(window=W))


def test_defaults_are_the_bundles_recommendation():
    assert resolve_decoding(bundle()) == Decoding("stream", 16, chosen=False)
    assert resolve_decoding(bundle("exact", 1)) == Decoding("exact", None, chosen=False)
    assert resolve_decoding(bundle(R=100, W=64)).refill_every == 64       # at most the window
    assert resolve_decoding(bundle("exact"), "stream") == Decoding("stream", 16, chosen=True)
    assert resolve_decoding(bundle(), "exact") == Decoding("exact", None, chosen=True)
    assert resolve_decoding(bundle(), refill_every=8) == Decoding("stream", 8, chosen=True)
    assert resolve_decoding(bundle(), "stream", np.int64(4)).refill_every == 4
    assert type(resolve_decoding(bundle(), "stream", np.int64(4)).refill_every) is int


def test_describe_and_why():
    d = resolve_decoding(bundle())
    assert (d.describe(), d.why) == ("stream mode, refill every 16", "the bundle's recommendation")
    d = resolve_decoding(bundle(), "exact")
    assert (d.describe(), d.why) == ("exact mode", "chosen")


@pytest.mark.parametrize("source, mode, R, spelling, param, message", [
    (bundle(), "fast", None, API, "mode", "mode must be one of stream, exact, got 'fast'"),
    (bundle(), "fast", None, CLI, "mode", "--mode must be one of stream, exact, got 'fast'"),
    (bundle(), "exact", 4, API, "refill_every",
     'refill_every applies to stream mode only, not exact mode; ask for "mode": "stream"'),
    (bundle(), "exact", 4, CLI, "refill_every",
     "--refill-every applies to stream mode only, not exact mode; use --mode stream"),
    (bundle(), "exact", 4, CHAT, "refill_every",
     "/refill R applies to stream mode only, not exact mode; /mode stream first"),
    (bundle("exact"), None, 4, CLI, "refill_every",      # exact by the bundle's recommendation: the same
     "--refill-every applies to stream mode only, not exact mode; use --mode stream"),
    (bundle(), "stream", 0, API, "refill_every",
     "refill_every must be an integer from 1 to the window W = 64, got 0"),
    (bundle(), None, 65, CLI, "refill_every",
     "--refill-every must be an integer from 1 to the window W = 64, got 65"),
    (bundle(), "stream", True, API, "refill_every",
     "refill_every must be an integer from 1 to the window W = 64, got True"),
    (bundle(), "stream", 4.0, API, "refill_every",
     "refill_every must be an integer from 1 to the window W = 64, got 4.0"),
    (bundle(), "stream", -3, CHAT, "refill_every",
     "/refill R must be an integer from 1 to the window W = 64, got -3"),
])
def test_each_mistake_is_one_line_naming_the_setting(source, mode, R, spelling, param, message):
    with pytest.raises(DecodingError) as e:
        resolve_decoding(source, mode, R, spelling)
    assert str(e.value) == message and e.value.param == param
    assert isinstance(e.value, MofError) and "\n" not in message


def test_every_entry_point_resolves_the_same_way(model):
    W = model.config.window
    recommended = resolve_decoding(model)
    assert recommended.refill_every == model.recommended_refill_every or recommended.mode == "exact"
    assert isinstance(make_decoder(model, "exact"), ExactDecoder)
    assert make_decoder(model, "stream").refill_every == resolve_decoding(model, "stream").refill_every
    assert StreamDecoder(model).refill_every == resolve_decoding(model, "stream").refill_every
    s = ChatSession(model, SamplingConfig(), "exact")
    assert (s.mode, s.refill_every) == ("exact", None)
    assert s.set_decoding("stream", 4) == Decoding("stream", 4, chosen=True) and s.refill_every == 4
    for call in (lambda: make_decoder(model, "exact", 4),
                 lambda: Generator(model, "床前", SamplingConfig(), "exact", 4),
                 lambda: ChatSession(model, SamplingConfig(), "exact", refill_every=4),
                 lambda: s.set_decoding("exact", 4)):
        with pytest.raises(DecodingError, match="applies to stream mode only"):
            call()
    for R in (-1, 0, W + 1, True):
        with pytest.raises(DecodingError, match=f"from 1 to the window W = {W}"):
            StreamDecoder(model, R)
    assert s.decoding == Decoding("stream", 4, chosen=True)          # a refused change changes nothing
