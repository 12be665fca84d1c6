"""Checks of the step and chunk graphs at export time (docs/network.md, "How each graph is checked", 2–4).

- against the numpy oracle's stream definition (export/oracle.py), prompt
  lengths across the transformer window, batch 2;
- with no transformer layers, against TensorFlow itself (everything left is causal);
- invariances: one prefill == token-by-token steps == uneven chunks (logits and state);
- the chunk graph's state (refills) == the numpy oracle's non-causal sums and GRU states.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from mof.runtime.model import Model

from .validate import parity_lengths

CHUNKS = (1, 2, 7)


def _line(log, ok, what, diff, atol):
    log(f"  {'✓' if ok else '✗'} {what:<48} max|Δlogit| {diff:.2e}  (atol {atol:.0e})")


def check_step(model: Model, oracle_stream: Callable[[np.ndarray], np.ndarray],
               tf_full: Optional[Callable[[np.ndarray], np.ndarray]], atol: float,
               log: Callable[[str], None], seed: int = 1) -> dict:
    cfg = model.config
    rng = np.random.default_rng(seed)
    lengths = parity_lengths(cfg)
    ids = rng.integers(0, cfg.vocab_size, size=(2, max(lengths)), dtype=np.int32)
    cases = []

    def record(kind, seq, diff):
        ok = bool(np.isfinite(diff) and diff <= atol)
        cases.append({"check": kind, "batch": 2, "seq": seq, "max_abs_diff": float(diff), "ok": ok})
        return ok

    ref = oracle_stream(ids)                                      # [2, T, V] float64, causal
    for T in lengths:
        logits, _ = model.prefill(ids[:, :T])
        diff = float(np.abs(logits - ref[:, T - 1]).max())
        _line(log, record("oracle", T, diff), f"step   batch 2  seq {T:>4}  vs numpy stream", diff, atol)
    if cfg.blocks == 0 and tf_full is not None:      # no transformer block: everything left is causal
        for T in [t for t in lengths if t <= cfg.trans_window]:
            logits, _ = model.prefill(ids[:, :T])
            diff = float(np.abs(logits - tf_full(ids[:, :T])[:, -1]).max())
            _line(log, record("tensorflow", T, diff), f"step   batch 2  seq {T:>4}  vs TensorFlow (L=0)",
                  diff, atol)

    n = min(ids.shape[1], 24)
    whole, s_whole = model.prefill(ids[:, :n])
    pieces = {"token by token": [1] * n, "chunks 1,2,7": []}
    while sum(pieces["chunks 1,2,7"]) < n:
        pieces["chunks 1,2,7"].append(min(CHUNKS[len(pieces["chunks 1,2,7"]) % 3],
                                          n - sum(pieces["chunks 1,2,7"])))
    for name, sizes in pieces.items():
        state, at = model.initial_state(2), 0
        for size in sizes:
            logits, state = model.step(ids[:, at:at + size], state)
            at += size
        diff = max([float(np.abs(logits - whole).max())] +
                   [float(np.abs(a - b).max()) for (_, a), (_, b) in zip(state.tensors(), s_whole.tensors())
                    if a.size])
        _line(log, record(name, n, diff), f"step   batch 2  seq {n:>4}  {name} == prefill", diff, atol)
    return {"reference": "numpy stream oracle (export/oracle.py); TensorFlow when L = 0",
            "atol": atol, "passed": all(c["ok"] for c in cases),
            "max_abs_diff": max(c["max_abs_diff"] for c in cases), "cases": cases}


def check_chunk(model: Model, oracle_state: Callable[[np.ndarray], dict], atol: float,
                log: Callable[[str], None], seed: int = 2) -> dict:
    """The chunk graph's state (its logits are checked against TensorFlow with the other graphs,
    export/validate.py) against the numpy oracle's non-causal sums and GRU states, at the parity
    lengths (past Wt included)."""
    cfg = model.config
    rng = np.random.default_rng(seed)
    lengths = parity_lengths(cfg)
    ids = rng.integers(0, cfg.vocab_size, size=(2, max(lengths)), dtype=np.int32)
    cases = []
    for T in lengths:
        _, state = model.chunk(ids[:, :T])
        # sums over up to W positions grow with W: each field is compared relative to its scale
        # (max |value|, at least 1), the float32 rounding of a sum being relative to its size
        ref = oracle_state(ids[:, :T])
        # every field of the model's state (T6 or T7 layout) must be there, and only those
        fields = [f for f in state.names if f != "position"]
        rel = {f: float(np.abs(getattr(state, f) - ref[f]).max() / max(1.0, float(np.abs(ref[f]).max())))
               if f in ref else float("inf") for f in fields if f not in ref or ref[f].size}
        rel.update({f: float("inf") for f in ref if f not in fields})
        worst = max(rel, key=rel.get)
        ok = bool(np.isfinite(rel[worst]) and rel[worst] <= atol)
        abs_diff = (float(np.abs(getattr(state, worst) - ref[worst]).max()) if np.isfinite(rel[worst])
                    else float("inf"))
        cases.append({"check": "oracle state", "batch": 2, "seq": T, "max_rel_diff": rel[worst],
                      "max_abs_diff": abs_diff, "ok": ok})
        log(f"  {'✓' if ok else '✗'} {f'chunk  batch 2  seq {T:>4}  state vs numpy window sums':<48} "
            f"max|Δ|/scale {rel[worst]:.2e}  (atol {atol:.0e}; worst: {worst})")
    return {"reference": "numpy oracle's non-causal state (export/oracle.py), relative to each field's scale",
            "atol": atol, "passed": all(c["ok"] for c in cases),
            "max_rel_diff": max(c["max_rel_diff"] for c in cases), "cases": cases}



def check_decode(separate: Model, decode: Model, atol: float, log: Callable[[str], None], seed: int = 3) -> dict:
    """The decode graph (step and chunk in one, what mof.runtime loads) against the step and chunk
    graphs: a refill and a step after it, batch 2, at the parity lengths; logits and every state
    field. ``separate`` runs the two graphs, ``decode`` the one."""
    cfg = separate.config
    rng = np.random.default_rng(seed)
    lengths = parity_lengths(cfg)
    ids = rng.integers(0, cfg.vocab_size, size=(2, max(lengths) + 3), dtype=np.int32)
    cases = []

    def diff(a, b):
        (la, sa), (lb, sb) = a, b
        return max([float(np.abs(la - lb).max())] +        # (fields may be empty: no blocks, L = 0)
                   [float(np.abs(getattr(sa, f) - getattr(sb, f)).max(initial=0.0)) for f in sa.names])
    for T in lengths:
        ra, rb = separate.chunk(ids[:, :T]), decode.chunk(ids[:, :T])
        d_refill = diff(ra, rb)
        d_step = diff(separate.step(ids[:, T:T + 3], ra[1]), decode.step(ids[:, T:T + 3], rb[1]))
        for kind, d in (("refill", d_refill), ("step after it", d_step)):
            ok = bool(np.isfinite(d) and d <= atol)
            cases.append({"check": kind, "batch": 2, "seq": T, "max_abs_diff": d, "ok": ok})
            log(f"  {'✓' if ok else '✗'} {f'decode batch 2  seq {T:>4}  {kind} vs separate graphs':<48} "
                f"max|Δ| {d:.2e}  (atol {atol:.0e})")
    return {"reference": "the step and chunk graphs (logits and every state field)", "atol": atol,
            "passed": all(c["ok"] for c in cases),
            "max_abs_diff": max(c["max_abs_diff"] for c in cases), "cases": cases}
