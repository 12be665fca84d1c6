"""Plain stream decoding: the baseline the refill rule is measured against (mof-export's policy
table, mof-eval, mof-bench's "plain" mode), never what an app runs (runtime/decoder.py).

A plain decoder reads causally from the first token with the step graph, its positions running
to the end of the position table P; when a read would pass P it re-reads the last W ids causally
from a zero state. Without the refills of the refill rule its positions and sums go where the
reference's never do, so it drifts from exact mode (docs/bundle-format.md, "The refill rule").
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from mof.runtime.errors import MofError
from mof.runtime.model import Model
from mof.runtime.state import State

PLAIN = 0      # the plain row's refill_every in a policy table (no refill before P)


class PlainDecoder:
    """The decoder interface Generator and the measuring tools use (``feed``, ``logits``,
    ``state``, ``refills``, ``keep``), reading by the plain rule."""

    mode = "plain"
    refill_every = PLAIN

    def __init__(self, model: Model):
        self.model = model
        self.keep = model.config.window               # ids a re-read reads: the last W
        self.state: Optional[State] = None            # batch 1, after the last id read
        self.ids: list[int] = []                      # the last W ids read
        self.refills = 0                              # re-reads at the end of the position table
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
        full = self.position + len(ids) > self.model.config.max_positions
        start = self.model.initial_state(1) if full or self.state is None else self.state
        logits, self.state = self.model.step(np.asarray([seen[-self.keep:] if full else ids]), start)
        self.refills += int(full)
        self.ids = seen[-self.keep:]
        self.logits = logits[0]
        return self.logits
