"""What the command-line tools share: argparse number types and one-line error handling."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable

from .errors import MofError


def number(kind, check: Callable, what: str):
    """An argparse type: ``kind(text)`` that must pass ``check``; errors say what was expected."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not check(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v
    return parse


def run_command(prog: str, work: Callable[[], int], *, debug: bool, interrupted: str = "",
                unchanged: str = "", broken_pipe_ok: bool = False, internal_errors: bool = False) -> int:
    """Run ``work``; a user mistake becomes one line on stderr and a non-zero exit code.

    ``interrupted``: what to say on Ctrl-C (else a bare newline); ``unchanged``: appended to
    disk errors (e.g. "nothing was written"); ``internal_errors``: report any other exception
    in one line too (its traceback with --debug)."""
    try:
        return work()
    except MofError as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}" if interrupted else "", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if broken_pipe_ok:
            return 0
        raise
    except OSError as e:
        if debug:
            traceback.print_exc()
        where = f" ({e.filename})" if e.filename else ""
        tail = f"; {unchanged}" if unchanged else ""
        print(f"{prog}: error: {e.strerror or e}{where}{tail}", file=sys.stderr)
        return 1
    except Exception as e:
        if debug or not internal_errors:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e}; rerun with --debug for the "
              "traceback", file=sys.stderr)
        return 1
