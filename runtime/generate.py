"""Text generation as a streaming iterator, in stream or exact mode.

    gen = Generator(model, "床前明月光，", SamplingConfig(seed=1))   # the bundle's recommended decoding
    for piece in gen:
        print(piece, end="", flush=True)
    gen.decoder      # what was read: state, ids, refill counter (runtime/decoder.py), for going on

As in the reference, the text is the source of truth: each generated token's
string is appended to the text, and what the model reads next is that string
re-encoded one character at a time (so a duplicated vocabulary entry feeds back
the id the reference would feed back). The repetition penalty looks at the
distinct ids of the last W characters, exactly as xiaothink's loop does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import numpy as np

from .decoder import ExactDecoder, StreamDecoder, make_decoder
from .decoding import MODES  # noqa: F401 (re-exported: the modes Generator takes)
from .errors import MofError
from .model import Model
from .sampling import Sampler, SamplingConfig
from .state import State

Decoder = Union[StreamDecoder, ExactDecoder]


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0            # time to the first logits (prompt ingestion)
    decode_s: float = 0.0             # time spent producing the rest
    refills: int = 0                  # times stream mode re-read its last K tokens (the refill rule)
    stopped_by: str = ""              # "stop", "max_tokens"

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else float("nan")

    @property
    def decode_tokens_per_s(self) -> float:
        return self.generated_tokens / self.decode_s if self.decode_s > 0 else float("nan")


def _holdback(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class Generation:
    """The text side of one generation, model-free: sampling, the text, stop strings.

    Whoever owns the model drives it (``Generator`` for one sequence, a server for many):

        gen = Generation(vocab, prompt, sampling, penalty_window=W)
        while not gen.done:
            ids = gen.take_unread()          # what the model must read next (the prompt first)
            released = gen.advance(logits_after(ids))   # sample one token; text safe to show
        gen.take_unread()                    # the last token: stream mode reads it too, so the
                                             # state stays in step with the text
    """

    def __init__(self, vocab, prompt: str, sampling: SamplingConfig, penalty_window: int,
                 history: str = ""):
        self.vocab = vocab
        self.sampling = sampling
        self.sampler = Sampler(sampling, vocab)
        self.penalty_window = sampling.penalty_window or penalty_window
        self.text = history + prompt                # everything the model has read (or will)
        self.output = ""                            # generated text (stop string excluded)
        self.generated = 0                          # tokens sampled
        self.token: Optional[int] = None            # the last token sampled
        self.stopped_by = "" if sampling.max_tokens else "max_tokens"    # "stop", "max_tokens"
        self._pending = ""                          # generated but not yet released (may start a stop)
        self._unread = prompt                       # text the model has not read yet

    @property
    def done(self) -> bool:
        return bool(self.stopped_by)

    def take_unread(self) -> list[int]:
        """The ids of the text the model has not read yet (then counted as read)."""
        ids, self._unread = self.vocab.encode(self._unread) if self._unread else [], ""
        return ids

    def advance(self, logits: np.ndarray) -> str:
        """Sample the next token from ``logits`` [V] (after everything taken so far); returns the
        text that can be shown now (held back while it may start a stop string)."""
        if self.done:
            raise MofError("the generation is over")
        sp = self.sampling
        recent = self.vocab.encode(self.text[-self.penalty_window:])
        self.token = self.sampler.sample(logits, recent)
        piece = self.vocab.tokens[self.token]
        self.text += piece
        self._unread = piece
        self.generated += 1
        self._pending += piece
        hit = min((i for i in (self._pending.find(s) for s in sp.stop) if i >= 0), default=-1)
        if hit >= 0:
            self._pending = self._pending[:hit]
            self.stopped_by = "stop"
        elif self.generated >= sp.max_tokens:
            self.stopped_by = "max_tokens"
        keep = 0 if self.done else _holdback(self._pending, sp.stop)
        release = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep:]
        self.output += release
        return release


class Generator:
    def __init__(self, model: Model, prompt: str, sampling: SamplingConfig = SamplingConfig(),
                 mode: Optional[str] = None, refill_every: Optional[int] = None, *,
                 decoder: Optional[Decoder] = None, history: str = ""):
        """``mode`` and ``refill_every`` default to the bundle's recommendation. ``decoder``: go on
        from a decoder that has read ``history`` (a chat session's earlier turns)."""
        if decoder is None:
            decoder = make_decoder(model, mode, refill_every)
        elif decoder.model is not model:
            raise MofError("the decoder belongs to another model")
        if not prompt and decoder.logits is None:
            raise MofError("the prompt is empty: give at least one character")
        self.model = model
        self.vocab = model.vocab
        self.sampling = sampling
        self.decoder = decoder
        self.mode = decoder.mode
        self.generation = Generation(self.vocab, prompt, sampling, model.config.window, history)
        self.prompt = prompt
        self.stats = GenerationStats(prompt_tokens=len(prompt))

    @property
    def state(self) -> Optional[State]:
        """The recurrent state after the last token read (stream mode), for saving."""
        return self.decoder.state

    @property
    def sampler(self) -> Sampler:
        """The generation's sampler (its random state)."""
        return self.generation.sampler

    @property
    def text(self) -> str:
        """Everything the model has read: history, prompt and the generated text."""
        return self.generation.text

    @property
    def output(self) -> str:
        """The generated text so far (stop string excluded)."""
        return self.generation.output

    def _feed(self) -> np.ndarray:
        """Read what the generation has not read yet; the logits after it."""
        before = self.decoder.refills
        logits = self.decoder.feed(self.generation.take_unread())
        self.stats.refills += self.decoder.refills - before
        return logits

    def __iter__(self) -> Iterator[str]:
        gen = self.generation
        t0 = time.perf_counter()
        logits = self._feed()
        t1 = time.perf_counter()
        self.stats.prefill_s = t1 - t0
        while not gen.done:
            release = gen.advance(logits)
            self.stats.generated_tokens = gen.generated
            self.stats.decode_s = time.perf_counter() - t1     # kept current: a reply may be interrupted
            if release:
                yield release
            if not gen.done:
                logits = self._feed()
        self.stats.stopped_by = gen.stopped_by
        if self.mode == "stream" and gen.generated:
            self._feed()   # keep the state in step with the text (stop string included)
        self.stats.decode_s = time.perf_counter() - t1


def generate(model: Model, prompt: str, sampling: SamplingConfig = SamplingConfig(),
             mode: Optional[str] = None, refill_every: Optional[int] = None) -> Iterator[str]:
    """Stream the continuation of ``prompt`` piece by piece."""
    return iter(Generator(model, prompt, sampling, mode, refill_every))
