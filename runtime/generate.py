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

from .decoder import MODES, ExactDecoder, StreamDecoder, make_decoder  # noqa: F401 (MODES: re-exported)
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
        self.sampler = Sampler(sampling, self.vocab)
        self.penalty_window = sampling.penalty_window or model.config.window
        self.text = history + prompt                # everything the model has read
        self.prompt = prompt
        self.output = ""                            # generated text (stop string excluded)
        self.stats = GenerationStats(prompt_tokens=len(prompt))
        self._logits: Optional[np.ndarray] = decoder.logits

    @property
    def state(self) -> Optional[State]:
        """The recurrent state after the last token read (stream mode), for saving."""
        return self.decoder.state

    # Feeding the model ------------------------------------------------------------------
    def _feed(self, new_text: str) -> None:
        """Advance the model over ``new_text`` (already appended to self.text)."""
        if new_text:
            before = self.decoder.refills
            self._logits = self.decoder.feed(self.vocab.encode(new_text))
            self.stats.refills += self.decoder.refills - before

    def __iter__(self) -> Iterator[str]:
        sp = self.sampling
        t0 = time.perf_counter()
        self._feed(self.prompt)
        if self._logits is None:
            raise MofError("nothing to continue from: empty prompt and no state")
        t1 = time.perf_counter()
        self.stats.prefill_s = t1 - t0
        pending = ""                                   # generated but not yet released (may start a stop)
        last = None                                    # the previous piece, not yet read by the model
        self.stats.stopped_by = "max_tokens"
        for _ in range(sp.max_tokens):
            if last is not None:
                self._feed(last)
            recent = self.vocab.encode(self.text[-self.penalty_window:])
            token = self.sampler.sample(self._logits, recent)
            last = piece = self.vocab.tokens[token]
            self.text += piece
            self.stats.generated_tokens += 1
            self.stats.decode_s = time.perf_counter() - t1     # kept current: a reply may be interrupted
            pending += piece
            hit = min((i for i in (pending.find(s) for s in sp.stop) if i >= 0), default=-1)
            if hit >= 0:
                pending = pending[:hit]
                self.stats.stopped_by = "stop"
                break
            keep = _holdback(pending, sp.stop)
            release = pending[: len(pending) - keep]
            if release:
                self.output += release
                yield release
            pending = pending[len(pending) - keep:]
        if pending:
            self.output += pending
            yield pending
        if self.mode == "stream" and last is not None:
            self._feed(last)   # keep the state in step with the text (stop string included)
        self.stats.decode_s = time.perf_counter() - t1


def generate(model: Model, prompt: str, sampling: SamplingConfig = SamplingConfig(),
             mode: Optional[str] = None, refill_every: Optional[int] = None) -> Iterator[str]:
    """Stream the continuation of ``prompt`` piece by piece."""
    return iter(Generator(model, prompt, sampling, mode, refill_every))
