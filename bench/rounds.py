"""Interleaved rounds of worker processes (benchmarks/peers.py, benchmarks/window_passes.py): the
order rotated each round, and a pause before each turn so the previous worker's onnxruntime pool
threads, which spin-wait after a run, have let go of the cores."""

from __future__ import annotations

SETTLE_S = 0.5          # default seconds of quiet before each timed turn
MAX_SETTLE_S = 60.0


def rotated(order: list, k: int) -> list:
    """Round k's order: ``order`` rotated by k (each worker takes each place in turn)."""
    return order[k % len(order):] + order[:k % len(order)] if order else []


def settle_error(settle: float) -> str | None:
    """The one-line complaint about a --settle value, or None when it is usable."""
    if 0 <= settle <= MAX_SETTLE_S:
        return None
    return f"--settle must be between 0 and {MAX_SETTLE_S:g} seconds, got {settle}"
