"""How a sequence is decoded, resolved once: the mode and stream mode's refill period R.

    d = resolve_decoding(model)                          # the bundle's recommendation
    d = resolve_decoding(model, "stream", 8, CLI)        # what a user asked for, checked
    d.mode, d.refill_every, d.describe(), d.why          # "stream", 8, "stream mode, refill every 8", "chosen"

Every entry point (mof-run and its /mode and /refill commands, ChatSession, Generator, the
decoders, mof-serve's requests, mof-bench) resolves through ``resolve_decoding``, so each applies
the same defaults and refuses the same mistakes with the same words. R belongs to stream mode:
asking for one with exact mode is a mistake (a DecodingError), not silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import MofError

MODES = ("stream", "exact")


@dataclass(frozen=True)
class Spelling:
    """How a caller's user names the two settings, so a message says what to change."""
    mode: str = "mode"
    refill_every: str = "refill_every"
    to_stream: str = 'ask for "mode": "stream"'    # how to ask for stream mode


API = Spelling()                                          # mof-serve's request fields
CLI = Spelling("--mode", "--refill-every", "use --mode stream")
CHAT = Spelling("/mode", "/refill R", "/mode stream first")


class DecodingError(MofError):
    """A decoding setting a user got wrong; ``param`` names it (``mode`` or ``refill_every``)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Decoding:
    mode: str                       # "stream" or "exact"
    refill_every: Optional[int]     # stream mode's R, 1 <= R <= W; None in exact mode
    chosen: bool = False            # False: the bundle's recommendation throughout

    @property
    def why(self) -> str:
        return "chosen" if self.chosen else "the bundle's recommendation"

    def describe(self) -> str:
        return f"stream mode, refill every {self.refill_every}" if self.mode == "stream" else "exact mode"


def recommended_refill_every(manifest, config) -> int:
    """The bundle's R capped at the window W of ``config`` (a Model's may be narrowed): the one
    place R <= W is applied to a recommendation (Model.recommended_refill_every reads it)."""
    return min(manifest.recommended_refill_every, config.window)


def resolve_decoding(source, mode: Optional[str] = None, refill_every: Optional[int] = None,
                     spelling: Spelling = API) -> Decoding:
    """``mode`` and ``refill_every`` as given (None: the bundle's recommendation), checked:
    mode stream or exact; R an integer from 1 to the window W; no R with exact mode.
    ``source``: a Model (its window may be narrowed) or a Manifest. DecodingError when wrong."""
    if mode is not None and mode not in MODES:
        raise DecodingError(f"{spelling.mode} must be one of {', '.join(MODES)}, got {mode!r}", "mode")
    resolved = mode or source.recommended_mode
    if refill_every is not None and resolved != "stream":
        raise DecodingError(f"{spelling.refill_every} applies to stream mode only, not exact mode; "
                            f"{spelling.to_stream}", "refill_every")
    if resolved == "exact":
        return Decoding("exact", None, mode is not None)
    W = source.config.window
    if refill_every is None:
        return Decoding("stream", recommended_refill_every(getattr(source, "manifest", source), source.config),
                        mode is not None)
    if isinstance(refill_every, bool) or not isinstance(refill_every, (int, np.integer)) \
            or not 1 <= refill_every <= W:
        raise DecodingError(f"{spelling.refill_every} must be an integer from 1 to the window W = {W}, "
                            f"got {refill_every!r}", "refill_every")
    return Decoding("stream", int(refill_every), True)
