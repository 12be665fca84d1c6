"""Next-token selection, in the reference's order, vectorised over the vocabulary.

xiaothink's generate_texts does, per token: repetition penalty on every distinct
token of the window (``logit /= penalty`` — which *raises* negative logits; the
``sign-aware`` mode divides positive and multiplies negative logits instead),
temperature, softmax, top-p (drop tokens whose sorted cumulative probability is
> top_p, keep at least one), remove banned characters, renormalise, and
``np.random.choice``. We do the same, with the same RandomState draw, so a
seeded run in exact mode picks the reference's tokens; top-k and min-p are
extras (off by default), applied after the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .errors import MofError
from .vocab import Vocabulary

PENALTY_MODES = ("reference", "sign-aware")


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.68          # 0 = greedy; reference chat default 0.68
    top_k: int = 0                     # keep the k most likely tokens; 0 = off
    top_p: float = 0.8                 # nucleus; 1.0 = off; reference chat default 0.8
    min_p: float = 0.0                 # drop tokens below min_p * max probability; 0 = off
    repetition_penalty: float = 1.2    # 1.0 = off; reference chat default 1.2
    penalty_mode: str = "reference"    # "reference" (logit /= p) or "sign-aware"
    penalty_window: Optional[int] = None   # tokens the penalty looks back on; None = model window
    ban: tuple[str, ...] = ()          # tokens never produced (the reference's pass_char)
    stop: tuple[str, ...] = ()         # generation ends before the first occurrence of any
    max_tokens: int = 256              # tokens to generate at most
    seed: Optional[int] = None         # same seed -> same text; None = fresh randomness

    def __post_init__(self) -> None:
        def bad(msg):
            raise MofError(msg)
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            bad(f"temperature must be >= 0, got {self.temperature}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0):
            bad(f"top_k must be an integer >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p < 1:
            bad(f"min_p must be in [0, 1), got {self.min_p}")
        if not (self.repetition_penalty > 0 and np.isfinite(self.repetition_penalty)):
            bad(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.penalty_mode not in PENALTY_MODES:
            bad(f"penalty_mode must be one of {', '.join(PENALTY_MODES)}, got {self.penalty_mode!r}")
        if self.penalty_window is not None and self.penalty_window < 1:
            bad(f"penalty_window must be >= 1, got {self.penalty_window}")
        if not (isinstance(self.max_tokens, int) and self.max_tokens >= 0):
            bad(f"max_tokens must be an integer >= 0, got {self.max_tokens}")
        if any(not s for s in self.stop):
            bad("stop strings must be non-empty")


class Sampler:
    """Turns logits [V] into a token id, holding the random state of one generation."""

    def __init__(self, config: SamplingConfig, vocab: Vocabulary):
        self.config = config
        ban = set(config.ban)
        self.banned = np.fromiter((t in ban for t in vocab.tokens), bool, vocab.size) if ban \
            else np.zeros(vocab.size, bool)                           # [V]
        if self.banned.all():
            raise MofError("every token of the vocabulary is banned")
        self.valid = np.flatnonzero(~self.banned)                     # [V'] allowed token ids
        self.rng = np.random.RandomState(config.seed)

    def penalize(self, logits: np.ndarray, recent: Sequence[int]) -> np.ndarray:
        """Repetition penalty on each distinct recent token (a copy; float32 like the reference)."""
        out = np.array(logits, dtype=np.float32)
        p = self.config.repetition_penalty
        if p != 1.0 and len(recent):
            idx = np.unique(np.asarray(recent, dtype=np.int64))
            if self.config.penalty_mode == "reference":
                out[idx] /= p
            else:
                v = out[idx]
                out[idx] = np.where(v > 0, v / p, v * p)
        return out

    def probabilities(self, logits: np.ndarray, recent: Sequence[int]) -> np.ndarray:
        """The distribution the next token is drawn from (after every filter), float32 [V]."""
        c = self.config
        penalized = self.penalize(logits, recent)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            x = penalized / np.float32(c.temperature)                 # the reference's order
        if not np.isfinite(x).all():
            # a temperature so small that logits / T overflows float32: same distribution,
            # computed as (logits - max) / T in float64 (-> the argmax, ties shared)
            x64 = penalized.astype(np.float64)
            with np.errstate(over="ignore"):                          # far below the max -> -inf -> 0
                x = ((x64 - x64.max()) / c.temperature).astype(np.float32)
        x = x - x.max()
        probs = np.exp(x)
        probs /= probs.sum()                                          # softmax
        if c.top_k and c.top_k < probs.size:
            kth = np.partition(probs, -c.top_k)[-c.top_k]
            probs = np.where(probs >= kth, probs, 0).astype(np.float32)
            probs /= probs.sum()
        if c.top_p < 1.0:
            nucleus(probs, c.top_p)
            probs /= probs.sum()
        if c.min_p > 0:
            probs = np.where(probs >= c.min_p * probs.max(), probs, 0).astype(np.float32)
            probs /= probs.sum()
        return probs

    def sample(self, logits: np.ndarray, recent: Sequence[int]) -> int:
        if self.config.temperature == 0:                              # greedy
            x = self.penalize(logits, recent)
            x[self.banned] = -np.inf
            return int(np.argmax(x))
        probs = self.probabilities(logits, recent)
        valid = self.valid
        p = probs[valid] if valid.size < probs.size else probs
        total = p.sum()
        if not total > 0:   # every kept token is banned: take the likeliest allowed one
            return int(valid[np.argmax(self.penalize(logits, recent)[valid])])
        return int(valid[draw(self.rng, p / total)])


def nucleus(probs: np.ndarray, top_p: float) -> None:
    """The reference's top-p cut, in place: order by probability, descending, and drop every
    token whose cumulative probability exceeds top_p (always keeping the first).

    The reference argsorts all V probabilities per token. Its running sums depend only on the
    sorted *values* (equal values added in any order give equal sums), and the kept tokens are
    exactly those at least as likely as the last kept one — so sorting the values (much faster
    than an argsort) decides the same cut. The one thing it
    cannot reproduce is which of several equal probabilities straddling the cut the
    reference's argsort happened to keep; then we run the reference's argsort itself.
    """
    desc = np.sort(probs)[::-1]                                       # [V] values, descending
    over = np.flatnonzero(np.cumsum(desc) > top_p)
    over = over[over > 0]
    if not over.size:
        return
    i = int(over[0])                                                  # first dropped position
    if desc[i - 1] != desc[i]:
        probs[probs < desc[i - 1]] = 0
        return
    order = np.argsort(probs)[::-1]                                   # a tie at the cut
    remove = np.cumsum(probs[order]) > top_p
    remove[0] = False
    probs[order[remove]] = 0


def draw(rng: np.random.RandomState, p: np.ndarray) -> int:
    """``rng.choice(len(p), p=p)`` without its input checks: numpy's own algorithm (cdf in
    float64, normalised by its last entry, one ``random_sample``, ``searchsorted`` right), so
    the same uniform draw picks the same index."""
    cdf = p.astype(np.float64).cumsum()
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random_sample(), side="right"))
