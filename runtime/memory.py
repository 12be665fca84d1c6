"""Giving freed memory back to the system after the graph calls that need the most of it.

onnxruntime runs without its CPU arena (runtime/model.py), so a call's activations are freed when
it returns — but glibc keeps freed heap memory for reuse, and the resident memory a long prompt or
a refill's activations once needed stays with the process. ``malloc_trim(0)`` hands it back.
It follows only calls that read at least ``TRIM_MIN_TOKENS`` tokens (long prompts), not refills
or steps: the memory given back has to be faulted in again by the next call, which slows
decoding that refills every few tokens, while a long prompt comes once. Elsewhere than glibc it
does nothing. The measurements: docs/bundle-format.md, "Embedding checklist".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

TRIM_MIN_TOKENS = 256        # rows x tokens of a graph call after which freed memory is returned


def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim               # glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_after(tokens: int) -> None:
    """Return freed heap memory to the system after a call that read ``tokens`` tokens in all."""
    if _TRIM is not None and tokens >= TRIM_MIN_TOKENS:
        _TRIM(0)
