"""A conversation with a model: templates, history, and (stream mode) the recurrent state.

In stream mode each turn's prompt normally extends what the model has already read
(previous prompt + reply + the stop string it generated), so only the new part is fed
to the step graph; anything else (raw form, an interrupted reply) re-reads the prompt
from a zero state. ``save``/``load`` keep a conversation across runs.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional


from .chat import Conversation
from .decoder import DecoderSnapshot, StreamDecoder
from .decoding import API, Decoding, Spelling, resolve_decoding
from .errors import MofError
from .files import STATE_PREFIX, read_state_npz, write_state_npz
from .generate import Generator
from .model import Model
from .sampling import SamplingConfig
from .state import State

SAVE_FORMAT = "mof-session"
SAVE_VERSION = 1
MAX_SAVE_BYTES = 64 * 1024 * 1024


class ChatSession:
    def __init__(self, model: Model, sampling: SamplingConfig, mode: Optional[str] = None,
                 form: Optional[str] = None, refill_every: Optional[int] = None):
        """``mode``, ``refill_every``: stream or exact, R of the refill rule (default: the bundle's
        recommendation; resolve_decoding checks them); ``form``: the prompt template (chat,
        instruct, pretrain, raw; default: the bundle's)."""
        self.model = model
        self.sampling = sampling
        self.decoding: Decoding = resolve_decoding(model, mode, refill_every)
        self.conversation = Conversation(form or model.form)
        self.decoder: Optional[StreamDecoder] = None   # stream mode: what the model has read so far ...
        self.consumed = ""                             # ... as text

    @property
    def mode(self) -> str:
        return self.decoding.mode

    @property
    def refill_every(self) -> Optional[int]:
        """Stream mode's R (None in exact mode)."""
        return self.decoding.refill_every

    @property
    def state(self) -> Optional[State]:
        return None if self.decoder is None else self.decoder.state

    def clear(self) -> None:
        self.conversation.clear()
        self.decoder, self.consumed = None, ""

    def set_decoding(self, mode: Optional[str], refill_every: Optional[int], spelling: Spelling = API) -> Decoding:
        """Decode later turns in ``mode`` with refill period ``refill_every`` (None: the bundle's
        recommendation; ``spelling``: how a mistake names them); the history stays, the next turn
        re-reads it from a zero state. Returns the decoding now in use."""
        self.decoding = resolve_decoding(self.model, mode, refill_every, spelling)
        self.decoder, self.consumed = None, ""
        return self.decoding

    def turn(self, text: str) -> Generator:
        """Start the reply to ``text``; iterate the result for its pieces, then call finish()."""
        return self.continue_text(self.conversation.prompt(text))

    def continue_text(self, prompt: str) -> Generator:
        sampling = replace(self.sampling, stop=tuple(self.conversation.stops) + tuple(self.sampling.stop))
        if (self.mode == "stream" and self.decoder is not None and len(prompt) > len(self.consumed)
                and prompt.startswith(self.consumed)):
            return Generator(self.model, prompt[len(self.consumed):], sampling,
                             decoder=self.decoder, history=self.consumed)
        return Generator(self.model, prompt, sampling, self.mode, self.refill_every)

    def finish(self, gen: Generator, interrupted: bool = False) -> None:
        self.conversation.add_reply(gen.output)
        if self.mode == "stream" and not interrupted:
            self.decoder, self.consumed = gen.decoder, gen.text
        else:
            self.decoder, self.consumed = None, ""

    # Saving ---------------------------------------------------------------------------
    def _identity(self) -> str:
        return self.model.manifest.network_identity

    def save(self, path: str | os.PathLike) -> int:
        """Write the conversation (history, state) atomically; returns the file's size."""
        path = Path(path)
        meta = {"format": SAVE_FORMAT, "version": SAVE_VERSION, "model": self._identity(),
                "form": self.conversation.form, "history": self.conversation.history,
                "consumed": self.consumed, "has_state": self.state is not None, "since_refill": 0}
        if self.state is not None:
            meta.update(self.decoder.snapshot().to_meta(ids=False))     # the ids: the consumed text's
        return write_state_npz(path, meta, self.state)

    def load(self, path: str | os.PathLike) -> None:
        path = Path(path)
        meta, arrays = read_state_npz(path, MAX_SAVE_BYTES, "a saved mof conversation")
        if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
            raise MofError(f"{path} is not a saved mof conversation")
        if meta.get("version") != SAVE_VERSION:
            raise MofError(f"{path} has version {meta.get('version')}; this mof reads {SAVE_VERSION}")
        if meta.get("model") != self._identity():
            raise MofError(f"{path} was saved with another model; start a new conversation")
        if meta.get("form") != self.conversation.form:
            raise MofError(f"{path} holds a '{meta.get('form')}' conversation; pass --form {meta.get('form')}")
        consumed = str(meta.get("consumed", ""))
        snapshot = None
        if meta.get("has_state"):
            # the ids are the consumed text's (one character, one id)
            fields = {**meta, "ids": self.model.vocab.encode(consumed[-self.model.config.window:])}
            try:
                state = State.from_arrays(arrays, self.model.config, prefix=STATE_PREFIX)
                if consumed:
                    snapshot = DecoderSnapshot.from_meta(fields, state, self.model.config.vocab_size)
            except MofError as e:
                raise MofError(f"{path}: {e}") from None
        self.conversation.history = str(meta.get("history", ""))
        if self.mode == "stream" and snapshot is not None:
            self.decoder = StreamDecoder.restore(self.model, snapshot, self.refill_every)
            self.consumed = consumed
        else:
            self.decoder, self.consumed = None, ""
