"""The bundle's vocabulary: id <-> character, as the reference encodes.

The reference builds ``char2idx = {c: i for i, c in enumerate(vocab)}`` (so
the *last* occurrence of a duplicated entry wins when encoding, while every id
still decodes), encodes text one character at a time, and maps characters it
does not know to the id of '▩'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .contract import UNKNOWN_TOKEN
from .errors import MofError

MAX_VOCAB_FILE_BYTES = 16 * 1024 * 1024   # far above any real vocabulary (16000 chars ~ 100 KB)
MAX_VOCAB_ENTRIES = 1_000_000


def check_token_list(obj: object, source: str) -> list[str]:
    """Validate an already-parsed vocabulary: a non-empty flat list of strings."""
    if not isinstance(obj, (list, tuple)):
        raise MofError(f"{source}: vocabulary must be a list of strings, got {type(obj).__name__}")
    if not obj:
        raise MofError(f"{source}: vocabulary is empty")
    if len(obj) > MAX_VOCAB_ENTRIES:
        raise MofError(f"{source}: vocabulary has {len(obj)} entries (limit {MAX_VOCAB_ENTRIES})")
    for i, tok in enumerate(obj):
        if not isinstance(tok, str):
            raise MofError(
                f"{source}: vocabulary entry {i} is {type(tok).__name__}, expected a string")
    return list(obj)


def read_limited(path: Path, limit: int = MAX_VOCAB_FILE_BYTES, what: str = "vocabulary") -> str:
    """Read a UTF-8 text file, refusing files larger than ``limit`` bytes; errors call it ``what``."""
    try:
        size = path.stat().st_size
        if size > limit:
            raise MofError(f"{path}: {what} file is {size} bytes (limit {limit})")
        data = path.read_bytes()
    except OSError as e:
        raise MofError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MofError(f"{path}: {what} is not UTF-8 ({e.reason} at byte {e.start})") from None


@dataclass(frozen=True)
class Vocabulary:
    tokens: tuple[str, ...]                          # id -> token
    ids: dict[str, int] = field(compare=False, repr=False)   # token -> id (last occurrence wins)
    unknown_id: int = field(compare=False)           # id used for characters not in ``ids``

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> "Vocabulary":
        tokens = tuple(check_token_list(list(tokens), "vocabulary"))
        ids = {t: i for i, t in enumerate(tokens)}
        unknown_id = ids.get(UNKNOWN_TOKEN, 0)
        return cls(tokens=tokens, ids=ids, unknown_id=unknown_id)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        text = read_limited(path)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise MofError(f"{path}: not a JSON list ({e.msg}, line {e.lineno})") from None
        return cls.from_tokens(check_token_list(obj, str(path)))

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def has_unknown_token(self) -> bool:
        return UNKNOWN_TOKEN in self.ids

    def duplicates(self) -> dict[str, list[int]]:
        """Tokens that occur more than once, with every id they occupy."""
        seen: dict[str, list[int]] = {}
        for i, t in enumerate(self.tokens):
            seen.setdefault(t, []).append(i)
        return {t: where for t, where in seen.items() if len(where) > 1}

    def encode(self, text: str) -> list[int]:
        get, unk = self.ids.get, self.unknown_id
        return [get(c, unk) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        toks = self.tokens
        n = len(toks)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise MofError(f"token id {i} is outside the vocabulary [0, {n})")
            out.append(toks[i])
        return "".join(out)

    def to_json(self) -> str:
        return json.dumps(list(self.tokens), ensure_ascii=False)
