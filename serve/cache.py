"""The state cache: what a stream decoder had read when a conversation's reply ended, keyed by the
text it read (one character = one token), so the next turn — whose prompt starts with that text,
because chat clients resend the whole history — reads only its new message.

Bounded by bytes (states, ids and texts), least recently used out first. With a folder
(``--state-dir``) every entry is also a file, written atomically and named by the sha256 of its
key (never by anything a client chose); at start the folder is read back, each file checked like
every file mof reads (size, an .npz without pickles, the model's identity, the state's shapes);
a file that fails is skipped with a warning, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from mof.runtime.decoder import DecoderSnapshot
from mof.runtime.errors import MofError
from mof.runtime.files import STATE_PREFIX, read_state_npz, write_state_npz
from mof.runtime.state import State

log = logging.getLogger("mof.serve")

FORMAT = "mof-state-cache"
VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    text: str                  # everything the decoder read
    snapshot: DecoderSnapshot  # what it had read (runtime/decoder.py): state, ids, counter, R

    @property
    def refill_every(self) -> int:
        """Its R (part of the key: the rule's counter means something only for this R)."""
        return self.snapshot.refill_every

    @property
    def nbytes(self) -> int:
        return self.snapshot.nbytes + 4 * len(self.text)


class StateCache:
    def __init__(self, max_bytes: int, identity: str, config, folder: Optional[Path] = None):
        """``identity``: what makes states comparable (the model's step graph hash and precision)."""
        self.max_bytes = int(max_bytes)
        self.identity = identity
        self.config = config
        self.folder = folder
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: "OrderedDict[tuple[int, str], Entry]" = OrderedDict()
        self._lengths: dict[int, int] = {}        # text length -> entries with it (lookup walks these)
        self._lock = threading.Lock()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._load_folder()

    def __len__(self) -> int:
        return len(self._entries)

    # Lookup and insertion ---------------------------------------------------------------
    def lookup(self, prompt: str, refill_every: int) -> Optional[Entry]:
        """The entry with the longest text that is a proper prefix of ``prompt`` (same R)."""
        with self._lock:
            for n in sorted((n for n in self._lengths if n < len(prompt)), reverse=True):
                entry = self._entries.get((refill_every, prompt[:n]))
                if entry is not None:
                    self._entries.move_to_end((refill_every, entry.text))
                    self.hits += 1
                    return entry
            self.misses += 1
            return None

    def put(self, entry: Entry) -> None:
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            self._add(entry)
        if self.folder is not None:
            self._write(entry)

    def _add(self, entry: Entry) -> None:
        """Insert as the most recently used, then evict the least recently used beyond the bound."""
        key = (entry.refill_every, entry.text)
        if key in self._entries:
            self._remove(key, delete_file=False)
        self._entries[key] = entry
        self.bytes += entry.nbytes
        self._lengths[len(entry.text)] = self._lengths.get(len(entry.text), 0) + 1
        while self.bytes > self.max_bytes:
            self._remove(next(iter(self._entries)), delete_file=True)

    def _remove(self, key, delete_file: bool) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.nbytes
        n = len(entry.text)
        self._lengths[n] -= 1
        if not self._lengths[n]:
            del self._lengths[n]
        if delete_file and self.folder is not None:
            try:
                os.unlink(self._path(entry))
            except FileNotFoundError:
                pass

    # Files ------------------------------------------------------------------------------
    def _path(self, entry: Entry) -> Path:
        # surrogatepass: any str hashes (a lone surrogate cannot be UTF-8, and must not raise here)
        key = f"{entry.refill_every}\n{entry.text}".encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(key).hexdigest()
        return self.folder / f"{digest}.npz"

    def _write(self, entry: Entry) -> None:
        meta = {"format": FORMAT, "version": VERSION, "model": self.identity, "text": entry.text,
                **entry.snapshot.to_meta()}
        try:
            write_state_npz(self._path(entry), meta, entry.snapshot.state)
        except (OSError, ValueError) as e:      # ValueError: a text UTF-8 cannot hold (kept in memory only)
            log.warning("state cache: cannot write %s: %s", self.folder, e)

    def _read(self, path: Path) -> Entry:
        meta, arrays = read_state_npz(path, MAX_FILE_BYTES, "a state cache file")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise MofError("not a state cache file of this version")
        if meta.get("model") != self.identity:
            raise MofError("written for another model or precision")
        text = meta.get("text")
        if not (isinstance(text, str) and text):
            raise MofError("bad text")
        state = State.from_arrays(arrays, self.config, prefix=STATE_PREFIX)
        entry = Entry(text, DecoderSnapshot.from_meta(meta, state, self.config.vocab_size))
        if path.name != self._path(entry).name:
            raise MofError("its name is not its content's hash")
        return entry

    def _load_folder(self) -> None:
        files = sorted((p for p in self.folder.glob("*.npz") if p.is_file()), key=lambda p: p.stat().st_mtime)
        loaded = 0
        for path in files:                      # oldest first: the newest end up most recently used
            try:
                entry = self._read(path)
            except (MofError, OSError) as e:
                log.warning("state cache: skipping %s: %s", path.name, e)
                continue
            self._add(entry)
            loaded += 1
        if loaded:
            log.info("state cache: %d conversations read from %s", len(self._entries), self.folder)
