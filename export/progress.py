"""Stage lines with elapsed times on stderr, so a minutes-long export visibly moves."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator, TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.index = 0
        self.t0 = time.perf_counter()

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=self.stream, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        self.index += 1
        self.log(f"[{self.index}/{self.total}] {name:<8} {what} …")
        t = time.perf_counter()
        yield
        now = time.perf_counter()
        self.log(f"      {name} done in {now - t:.1f} s (total {now - self.t0:.1f} s)")
