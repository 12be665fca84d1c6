"""mof-run --transcript FILE: every turn (and every change made with a command) as one JSON line,
appended and flushed as it happens, so a transcript survives a crash and several runs share one file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

from .errors import MofError

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "penalty_mode",
                   "max_tokens", "seed", "ban", "stop")


class Transcript:
    def __init__(self, path: Path):
        if path.is_dir():
            raise MofError(f"--transcript {path} is a directory")
        self.path = path
        self.file = open(path, "a", encoding="utf-8", newline="\n")    # appended to, never replaced
        self.turns = 0

    def _write(self, record: dict) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **record}
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.file.flush()

    def turn(self, session, user: str, gen, interrupted: bool = False) -> None:
        """One exchange: the user's text, the reply (the stop string excluded) and how it was made."""
        self.turns += 1
        s = session.sampling
        self._write({
            "event": "turn", "turn": self.turns, "model": session.model.bundle_dir.name,
            "form": session.conversation.form, "mode": gen.mode,
            "refill_every": getattr(gen.decoder, "refill_every", None) if gen.mode == "stream" else None,
            "precision": session.model.precision,
            "sampling": {f: list(v) if isinstance(v := getattr(s, f), tuple) else v for f in SAMPLING_FIELDS},
            "user": user, "reply": gen.output, "tokens": gen.stats.generated_tokens,
            "stopped_by": "interrupted" if interrupted else gen.stats.stopped_by,
        })

    def event(self, record: Optional[dict]) -> None:
        if record:
            self._write(record)

    def close(self) -> None:
        self.file.close()


def open_transcript(path: Optional[os.PathLike]) -> Optional[Transcript]:
    return Transcript(Path(path)) if path is not None else None
