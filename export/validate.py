"""Parity check: TensorFlow and onnxruntime side by side on the same token batches.

One ✓/✗ line per case (graph, batch, sequence length) with max |Δlogit| and
the tolerance, in the manner of optimum's validate_model_outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from mof.runtime.config import ModelConfig
from mof.runtime.contract import GRAPH_CHUNK, GRAPH_FULL, GRAPH_WINDOW, INPUT_IDS

BATCHES = (1, 3)


@dataclass(frozen=True)
class Case:
    graph: str            # "full", "window" or "chunk"
    batch: int
    seq: int
    max_abs_diff: float   # max |logit_tf - logit_onnx| over every element compared
    max_abs_logit: float  # the logits' scale, to read the difference against
    atol: float
    ok: bool


def parity_lengths(config: ModelConfig) -> list[int]:
    """1, 2, Wt-1, Wt, Wt+3 (past the crop) and the decoding window, within the position table."""
    wt = config.trans_window
    seqs = {1, 2, wt - 1, wt, wt + 3, config.window}
    return sorted(s for s in seqs if 1 <= s <= config.max_positions)


def run_parity(tf_full: Callable, ort_sessions: dict, config: ModelConfig, atol: float,
               log: Callable[[str], None], seed: int = 0) -> dict:
    """Compare the graphs with TF. ``tf_full(ids) -> [B, T, V]`` is the trained Keras model;
    the window and chunk graphs are checked against its last position."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for seq in parity_lengths(config):
        for batch in BATCHES:
            ids = rng.integers(0, config.vocab_size, size=(batch, seq), dtype=np.int32)
            ref = np.asarray(tf_full(ids))                                   # [B, T, V]
            for graph, want in ((GRAPH_FULL, ref), (GRAPH_WINDOW, ref[:, -1, :]), (GRAPH_CHUNK, ref[:, -1, :])):
                if graph not in ort_sessions:
                    continue
                got = ort_sessions[graph].run(None, {INPUT_IDS: ids})[0]
                if got.shape != want.shape:
                    diff, ok = float("inf"), False
                else:
                    diff = float(np.max(np.abs(got - want)))
                    ok = bool(np.isfinite(diff) and diff <= atol)
                case = Case(graph, batch, seq, diff, float(np.max(np.abs(want))), atol, ok)
                cases.append(case)
                log(f"  {'✓' if ok else '✗'} {graph:<6} batch {batch}  seq {seq:>4}  "
                    f"max|Δlogit| {diff:.2e}  (atol {atol:.0e}, max|logit| {case.max_abs_logit:.1f})"
                    + ("" if got.shape == want.shape else f"  shape {got.shape} != {want.shape}"))
    return {
        "reference": f"tensorflow (xiaothink's {config.family.upper()} model, tf_keras, inference mode)",
        "atol": atol,
        "passed": all(c.ok for c in cases),
        "max_abs_diff": max(c.max_abs_diff for c in cases),
        "cases": [asdict(c) for c in cases],
    }
