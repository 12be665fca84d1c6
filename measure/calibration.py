"""Calibration text: what accuracy is measured on when the user gives none.

The built-in sample is natural Chinese text in the public domain (Tang poems,
the Analects, the Tao Te Ching), so a character-level model sees the kind of
text it was trained on.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

from mof.runtime.errors import MofError
from mof.runtime.vocab import read_limited


MAX_CALIBRATION_BYTES = 64 * 1024 * 1024


def builtin_text() -> str:
    return resources.files("mof.measure").joinpath("data/calibration_zh.txt").read_text(encoding="utf-8")


def load_calibration_text(path: Optional[Path] = None) -> str:
    text = builtin_text() if path is None else read_limited(Path(path), MAX_CALIBRATION_BYTES,
                                                            what="calibration text")
    if len(text) < 2:
        raise MofError(f"calibration text {path} is too short (need at least 2 characters)")
    return text
