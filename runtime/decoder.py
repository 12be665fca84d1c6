"""Decoders: the one owner of how a sequence is read, in each decoding mode.

    dec = make_decoder(model, "stream", refill_every=16)   # or "exact"
    logits = dec.feed(prompt_ids)      # logits [V] after the last id read
    logits = dec.feed([next_id])       # ... one generated token at a time
    snap = dec.snapshot()              # stream mode: what a saved conversation or cache entry keeps
    dec = StreamDecoder.restore(model, snap)                # ... and goes on from

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
refill per R tokens) and drifts more. Each bundle measures the dial and recommends an R.

Batching: a decoder never calls the model itself. ``plan(ids)`` says which call reading ids
takes (a ``Read``: refill, step or exact, with its ids and state), ``commit(logits, state)``
takes the result. ``feed`` is plan + ``run_reads`` + commit for one decoder; a server runs
``run_reads`` over many decoders' reads at once (one graph call per kind and length) — the
same rule and the same graphs, so a row's tokens do not depend on what runs beside it.

Which mode and R a decoder gets is resolved by ``decoding.resolve_decoding`` (defaults and checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Optional, Sequence

import numpy as np

from .decoding import resolve_decoding
from .errors import MofError
from .model import Model
from .state import State

REFILL = "refill"   # Read kinds: the chunk graph on ids from a zero state (Model.refill) ...
STEP = "step"       # ... the step graph on ids from a state (Model.step) ...
EXACT = "exact"     # ... the network over the last W ids (Model.exact_logits)


def needs_refill(n_new: int, since_refill: int, has_state: bool, refill_every: int) -> bool:
    """The refill rule: are the next ``n_new`` ids read by a refill (or by causal steps)?"""
    return not has_state or since_refill + n_new > refill_every - 1


@dataclass(frozen=True)
class DecoderSnapshot:
    """A stream decoder's reading, frozen: the one form session files and the server's state cache
    keep (``to_meta``/``from_meta``: its JSON fields; the state goes into the file's arrays)."""
    state: State                       # batch 1, after the last id read; never mutated
    ids: tuple[int, ...]               # the last W ids read (refills re-read them)
    since_refill: int                  # ids stepped since the last refill
    refill_every: int                  # the R the counter counts for

    FIELDS = ("refill_every", "since_refill", "ids")

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, a in self.state.tensors()) + 8 * len(self.ids)

    def to_meta(self, ids: bool = True) -> dict:
        """The JSON fields; ``ids=False`` leaves the ids out for a file that keeps the text they
        encode (a session's, one character one id), which ``from_meta`` is then given."""
        meta = {"refill_every": self.refill_every, "since_refill": self.since_refill}
        return {**meta, "ids": list(self.ids)} if ids else meta

    @classmethod
    def from_meta(cls, meta: dict, state: State, vocab_size: int) -> "DecoderSnapshot":
        """The snapshot ``to_meta`` wrote (with its state read back); MofError naming a bad field."""
        R, since, ids = (meta.get(k) for k in cls.FIELDS)
        if not _is_int(R) or R < 1:
            raise MofError(f"bad refill_every {R!r}")
        if not _is_int(since) or since < 0:
            raise MofError(f"bad since_refill {since!r}")
        if not (isinstance(ids, list) and ids and all(_is_int(i) and 0 <= i < vocab_size for i in ids)):
            raise MofError("bad ids: a non-empty list of token ids")
        if state.batch != 1:
            raise MofError(f"a decoder's state has one row, not {state.batch}")
        return cls(state, tuple(ids), since, R)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Read:
    """One model call a decoder needs to read a feed."""
    kind: str                          # REFILL, STEP or EXACT
    ids: tuple[int, ...]               # the ids the call reads
    state: Optional[State] = None      # STEP: the batch-1 state the ids continue


def run_reads(model: Model, reads: Sequence[Read], max_batch: int = 0) -> list[tuple[np.ndarray, Optional[State]]]:
    """Run ``reads`` with one graph call per (kind, length) group of at most ``max_batch`` rows
    (0: no limit); returns (logits [V], batch-1 state or None) per read, in order."""
    out: list = [None] * len(reads)
    order = sorted(range(len(reads)), key=lambda i: (reads[i].kind, len(reads[i].ids)))
    for _, group in groupby(order, key=lambda i: (reads[i].kind, len(reads[i].ids))):
        group = list(group)
        size = max_batch or len(group)
        for k in range(0, len(group), size):
            rows = group[k:k + size]
            ids = np.asarray([reads[i].ids for i in rows], np.int32)          # [B, n]
            kind = reads[rows[0]].kind
            if kind == EXACT:
                logits, states = model.exact_logits(ids), [None] * len(rows)
            else:
                if kind == STEP:
                    logits, state = model.step(ids, State.stack([reads[i].state for i in rows], model.config))
                else:
                    logits, state = model.refill(ids)
                states = state.rows(model.config)
            for j, i in enumerate(rows):
                out[i] = (logits[j], states[j])
    return out


class _Decoder:
    """What both modes share: feed = plan + one read + commit."""

    logits: Optional[np.ndarray]

    def feed(self, ids: Sequence[int]) -> np.ndarray:
        """Read ``ids`` after everything read so far; returns the logits [V] after the last."""
        if not len(ids):
            if self.logits is None:
                raise MofError("nothing has been read yet")
            return self.logits
        (logits, state), = run_reads(self.model, [self.plan(ids)])
        return self.commit(logits, state)


class StreamDecoder(_Decoder):
    """Stream mode: a recurrent state, a causal step per token, a refill every R tokens."""

    mode = "stream"

    def __init__(self, model: Model, refill_every: Optional[int] = None, *, state: Optional[State] = None,
                 ids: Sequence[int] = (), since_refill: int = 0):
        """``state``/``ids``/``since_refill``: continue what an earlier decoder read (its
        ``state``, at least its last W ids, and its ``since_refill``; ``restore`` does it from a
        snapshot)."""
        self.model = model
        self.refill_every = resolve_decoding(model, "stream", refill_every).refill_every
        W = model.config.window
        self.keep = W - self.refill_every + 1        # K
        if state is not None and state.batch != 1:
            raise MofError(f"a decoder reads one sequence; the state has batch {state.batch}")
        if state is not None and not ids:
            raise MofError("continuing from a state needs the ids it has read (refills re-read them)")
        self.state = state
        self.ids = [int(i) for i in ids][-W:]         # the last W ids read
        self.since_refill = int(since_refill)
        if self.position + self.refill_every - 1 - self.since_refill > W:
            self.since_refill = self.refill_every - 1      # a state from elsewhere: refill next
        self.refills = 0                              # refills this decoder made
        self.logits: Optional[np.ndarray] = None      # [V] after the last id read
        self._pending: Optional[tuple[list[int], int, bool]] = None

    @property
    def position(self) -> int:
        return 0 if self.state is None else int(self.state.position[0])

    def snapshot(self) -> "DecoderSnapshot":
        """What going on from here needs (after at least one read): state, ids, refill counter, R."""
        if self.state is None:
            raise MofError("nothing has been read yet")
        return DecoderSnapshot(self.state, tuple(self.ids), self.since_refill, self.refill_every)

    @classmethod
    def restore(cls, model: Model, snapshot: "DecoderSnapshot", refill_every: Optional[int] = None) -> "StreamDecoder":
        """A decoder that goes on from ``snapshot``, at its R unless ``refill_every`` says another
        (the refill counter is then kept only while the positions it allows stay below W)."""
        R = snapshot.refill_every if refill_every is None else refill_every
        return cls(model, R, state=snapshot.state, ids=snapshot.ids, since_refill=snapshot.since_refill)

    def plan(self, ids: Sequence[int]) -> Read:
        """The call that reads ``ids`` (at least one) next, by the refill rule; ``commit`` its result."""
        ids = [int(i) for i in ids]
        if not ids:
            raise MofError("a read needs at least one id")
        seen = self.ids + ids
        refill = needs_refill(len(ids), self.since_refill, self.state is not None, self.refill_every)
        read = Read(REFILL, tuple(seen[-self.keep:])) if refill else Read(STEP, tuple(ids), self.state)
        self._pending = (seen, len(ids), refill)
        return read

    def commit(self, logits: np.ndarray, state: State) -> np.ndarray:
        """Take the result of the planned read: logits [V], the batch-1 state after it."""
        if self._pending is None:
            raise MofError("commit without a planned read")
        seen, n, refill = self._pending
        self._pending = None
        if refill:
            self.refills += 1
        self.since_refill = 0 if refill else self.since_refill + n
        self.state = state
        self.ids = seen[-self.model.config.window:]
        self.logits = logits
        return logits


class ExactDecoder(_Decoder):
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
        self._pending: Optional[list[int]] = None

    def plan(self, ids: Sequence[int]) -> Read:
        self._pending = (self.ids + [int(i) for i in ids])[-self.model.config.window:]
        if not self._pending:
            raise MofError("nothing has been read yet")
        return Read(EXACT, tuple(self._pending))

    def commit(self, logits: np.ndarray, state: None = None) -> np.ndarray:
        if self._pending is None:
            raise MofError("commit without a planned read")
        self.ids, self._pending = self._pending, None
        self.logits = logits
        return logits


def make_decoder(model: Model, mode: Optional[str] = None, refill_every: Optional[int] = None):
    """A decoder for ``mode`` and R, resolved by ``resolve_decoding`` (defaults: the bundle's
    recommendation; R with exact mode is refused)."""
    decoding = resolve_decoding(model, mode, refill_every)
    return StreamDecoder(model, decoding.refill_every) if decoding.mode == "stream" else ExactDecoder(model)
