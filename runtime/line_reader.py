"""Where mof-run's chat reads its lines: a terminal (line editing, history) or a pipe.

In a terminal the line is read with prompt_toolkit: Left/Right/Home/End and the usual Emacs
keys edit it, Up/Down recall earlier lines from a history file kept across runs, a paste of
several lines arrives as one message (bracketed paste; on Windows prompt_toolkit's console
reader detects pastes), and CJK characters are two columns wide. It works the same on Linux,
macOS and Windows, is pure Python, and is imported here only, when a terminal chat starts —
``import mof.runtime`` never loads it. Anything else (a pipe, a file) is read line by line.

A reader's ``read(continuation)`` returns one line (a paste: several) and raises EOFError at
the end of input and KeyboardInterrupt on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

PROMPT = "> "
CONTINUATION = "... "       # inside \"\"\" ... \"\"\"


def default_history_file() -> Optional[Path]:
    """~/.mof/run_history (Windows: %USERPROFILE%\\.mof\\run_history); None without a home folder."""
    try:
        return Path.home() / ".mof" / "run_history"
    except RuntimeError:
        return None


class PipeReader:
    """Lines from stdin as they are, no prompt (piped input, or a terminal whose output is not one)."""

    eof_key = "Ctrl-Z Enter" if sys.platform == "win32" else "Ctrl-D"     # what ends stdin here

    def __init__(self, prompt: bool = False):
        self.prompt = prompt        # write the prompt to stderr (stdin is a terminal, stdout is not)

    def read(self, continuation: bool = False) -> str:
        if self.prompt:
            sys.stderr.write(CONTINUATION if continuation else PROMPT)
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")


class TerminalReader:
    """prompt_toolkit's line editor with a persistent history (``history``: None = keep none)."""

    eof_key = "Ctrl-D"          # prompt_toolkit's end of input on an empty line, Windows too

    def __init__(self, history: Optional[Path]):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        if history is not None:
            try:
                history.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                if not history.exists():                      # the user's lines: theirs alone to read
                    fd = os.open(history, os.O_WRONLY | os.O_CREAT, 0o600)
                    os.close(fd)
                store = FileHistory(str(history))
            except OSError as e:
                print(f"mof-run: note: no history file ({e.strerror or e}: {history})", file=sys.stderr)
                store = InMemoryHistory()
        else:
            store = InMemoryHistory()
        self.session = PromptSession(history=store, enable_history_search=False)

    def read(self, continuation: bool = False) -> str:
        return self.session.prompt(CONTINUATION if continuation else PROMPT)


def open_reader(history: Optional[Path]):
    """The terminal reader when stdin and stdout are both terminals, else a PipeReader."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        return TerminalReader(history)
    return PipeReader(prompt=sys.stdin.isatty())
