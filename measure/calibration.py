"""The measuring text: what accuracy is measured on, and the flags that choose it.

The built-in sample, used when the user gives none, is natural Chinese text in the public domain
(Tang poems, the Analects, the Tao Te Ching), so a character-level model sees the kind of text it
was trained on. Every command that measures (mof-export, mof-quantize, mof-eval) takes the same
two flags, ``add_measure_flags``: ``--text FILE`` and ``--tokens N``.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Optional

from mof.runtime.cli_common import number
from mof.runtime.errors import MofError
from mof.runtime.vocab import read_limited


MAX_CALIBRATION_BYTES = 64 * 1024 * 1024
DEFAULT_TOKENS = 256    # characters measured when no --tokens is given (mof-eval: its own, longer default)
MIN_TOKENS = 2          # the fewest characters --tokens accepts (one prediction is no comparison);
                        # whether a table means anything is judged later (measure/gates.py)


def add_measure_flags(parser: argparse.ArgumentParser, what: str, *, text_required: bool = False,
                      tokens_default: Optional[int] = DEFAULT_TOKENS,
                      tokens_default_help: Optional[str] = None) -> None:
    """``--text FILE`` (``args.text``: a Path, or None for the built-in sample) and ``--tokens N``
    (``args.tokens``: at least MIN_TOKENS) on ``parser``, worded the same in every command that
    measures; ``what`` ends the text's help ("to measure on"). ``--calibration-text`` and
    ``--eval-tokens`` are the older spellings (mof-export's and mof-quantize's), kept as aliases so
    that existing scripts run unchanged."""
    default = "" if text_required else " (default: the built-in sample of classical Chinese poems and prose)"
    parser.add_argument("--text", "--calibration-text", dest="text", metavar="FILE", type=Path,
                        required=text_required,
                        help=f"UTF-8 text {what}{default}; --calibration-text is its older name")
    parser.add_argument("--tokens", "--eval-tokens", dest="tokens", metavar="N", default=tokens_default,
                        type=number(int, lambda v: v >= MIN_TOKENS, f"an integer >= {MIN_TOKENS}"),
                        help=f"characters of that text to measure on, at least {MIN_TOKENS} (default "
                             f"{tokens_default_help or tokens_default}); --eval-tokens is its older name")


def builtin_text() -> str:
    return resources.files("mof.measure").joinpath("data/calibration_zh.txt").read_text(encoding="utf-8")


def load_calibration_text(path: Optional[Path] = None) -> str:
    text = builtin_text() if path is None else read_limited(Path(path), MAX_CALIBRATION_BYTES,
                                                            what="calibration text")
    if len(text) < 2:
        raise MofError(f"calibration text {path} is too short (need at least 2 characters)")
    return text
