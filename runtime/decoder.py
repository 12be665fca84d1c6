"""Decoders: the one owner of how a sequence is read, in each decoding mode.

    dec = make_decoder(model, "stream", refill_every=16)   # or "exact"
    logits = dec.feed(prompt_ids)      # logits [V] after the last id read
    logits = dec.feed([next_id])       # ... one generated token at a time
    dec.state, dec.since_refill        # what a saved conversation keeps (stream mode)

**The refill rule** (stream mode; docs/bundle-format.md, "The refill rule"). W is the
bundle's window, R = ``refill_every`` (1 <= R <= W) and K = W - R + 1. Ids arrive in feeds
(the prompt, a chat turn's new text, then one generated token at a time):
- a feed is read by a *refill* when nothing has been read yet, or when stepping it would
  make more than R - 1 tokens stepped since the last refill; a refill re-reads the last K ids
  (the feed's included; fewer at the start of a text) from a zero state with the reference's
  own semantics (``Model.refill``, the chunk graph), so its logits are exact mode's for them;
- any other feed is stepped causally (``Model.step``) from the recurrent state.
A refill leaves the position at K or less and at most R - 1 steps follow: positions stay
below W, so stream decoding never uses a position or a sum the reference does not. R = 1
re-reads the last W ids for every token — exact mode's logits; larger R is cheaper (about one
window pass per R tokens) and drifts more. Each bundle measures the dial and recommends an R.

``refill_every=PLAIN`` (0) is how mof 0.1 decoded, kept only as the baseline of the measured
table: causal from the first token, positions running to the end of the position table, then
a causal re-read of the last W tokens.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .errors import MofError
from .model import Model
from .state import State

PLAIN = 0           # refill_every: no refill before the position table is full (comparison only)


def needs_refill(n_new: int, since_refill: int, has_state: bool, refill_every: int) -> bool:
    """The refill rule: are the next ``n_new`` ids read by a refill (or by causal steps)?"""
    return not has_state or since_refill + n_new > refill_every - 1


def check_refill_every(model: Model, refill_every: int) -> int:
    W = model.config.window
    if isinstance(refill_every, bool) or not isinstance(refill_every, (int, np.integer)) \
            or not 1 <= refill_every <= W:
        raise MofError(f"refill_every must be an integer from 1 to the window W = {W}, got {refill_every!r}")
    return int(refill_every)


class StreamDecoder:
    """Stream mode: a recurrent state, a causal step per token, a refill every R tokens."""

    mode = "stream"

    def __init__(self, model: Model, refill_every: Optional[int] = None, *, state: Optional[State] = None,
                 ids: Sequence[int] = (), since_refill: int = 0):
        """``state``/``ids``/``since_refill``: continue what an earlier decoder read (its
        ``state``, at least its last W ids, and its ``since_refill``)."""
        if refill_every is None:
            refill_every = model.recommended_refill_every
        self.model = model
        self.refill_every = refill_every if refill_every == PLAIN else check_refill_every(model, refill_every)
        W = model.config.window
        self.keep = W if self.refill_every == PLAIN else W - self.refill_every + 1    # K
        if state is not None and state.batch != 1:
            raise MofError(f"a decoder reads one sequence; the state has batch {state.batch}")
        if state is not None and not ids:
            raise MofError("continuing from a state needs the ids it has read (refills re-read them)")
        self.state = state
        self.ids = [int(i) for i in ids][-W:]         # the last W ids read
        self.since_refill = int(since_refill)
        if self.refill_every != PLAIN and self.position + self.refill_every - 1 - self.since_refill > W:
            self.since_refill = self.refill_every - 1      # a state from elsewhere: refill next
        self.refills = 0                              # refills this decoder made
        self.logits: Optional[np.ndarray] = None      # [V] after the last id read

    @property
    def position(self) -> int:
        return 0 if self.state is None else int(self.state.position[0])

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        """Read ``ids`` after everything read so far; returns the logits [V] after the last."""
        ids = [int(i) for i in ids]
        if not ids:
            if self.logits is None:
                raise MofError("nothing has been read yet")
            return self.logits
        seen = self.ids + ids
        if self.refill_every == PLAIN:
            logits, state = self._feed_plain(ids, seen)
        else:
            if needs_refill(len(ids), self.since_refill, self.state is not None, self.refill_every):
                logits, state = self.model.refill(np.asarray([seen[-self.keep:]], np.int32))
                self.refills += 1
                self.since_refill = 0
            else:
                logits, state = self.model.step(np.asarray([ids], np.int32), self.state)
                self.since_refill += len(ids)
        self.state = state
        self.ids = seen[-self.model.config.window:]
        self.logits = logits[0]
        return self.logits

    def _feed_plain(self, ids: list[int], seen: list[int]):
        P, W = self.model.config.max_positions, self.model.config.window
        state = self.state if self.state is not None else self.model.initial_state(1)
        if self.position + len(ids) > P:      # table full: re-read the last W ids causally
            self.refills += 1
            return self.model.prefill(np.asarray([seen[-W:]], np.int32))
        return self.model.prefill(np.asarray([ids], np.int32), state)


class ExactDecoder:
    """Exact mode, the reference's loop: the network over the last W ids, for every token."""

    mode = "exact"
    refill_every = 1
    state = None
    since_refill = 0
    refills = 0

    def __init__(self, model: Model, *, ids: Sequence[int] = ()):
        self.model = model
        self.ids = [int(i) for i in ids][-model.config.window:]
        self.logits: Optional[np.ndarray] = None

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        if not len(ids) and self.logits is not None:
            return self.logits
        self.ids = (self.ids + [int(i) for i in ids])[-self.model.config.window:]
        if not self.ids:
            raise MofError("nothing has been read yet")
        self.logits = self.model.exact_logits(np.asarray([self.ids], np.int32))[0]
        return self.logits


MODES = ("stream", "exact")


def make_decoder(model: Model, mode: Optional[str] = None, refill_every: Optional[int] = None):
    """A decoder for ``mode`` (default: the bundle's recommendation)."""
    mode = mode or model.recommended_mode
    if mode not in MODES:
        raise MofError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return StreamDecoder(model, refill_every) if mode == "stream" else ExactDecoder(model)
