"""The stream-fidelity dial, measured: each refill policy against exact decoding on real text.

For every policy — plain stream (no refill before the position table is full), a
refill every R tokens for R in {W/2, W/4, 16, 8, 4} (those between 2 and W/2), and exact
mode — on the same text, teacher-forced: perplexity, its change against exact's, mean
KL(exact || policy), top-1 agreement with exact, and the measured milliseconds per token at
each precision given. The recommendation is the cheapest refill policy (the largest R) within
the POLICY_* gates of gates.py; exact mode when none is.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from mof.runtime.decoder import ExactDecoder, StreamDecoder
from mof.runtime.errors import MofError
from mof.runtime.model import Model

from . import gates
from .accuracy import compare, decoder_logits, exact_logits, perplexity
from .calibration import DEFAULT_TOKENS
from .machine import cpu_features
from .plain import PLAIN, PlainDecoder

EXACT_TIMED_TOKENS = 64       # exact mode's ms per token is timed on this many tokens (it is slow)


def candidate_refills(window: int) -> list[int]:
    """R in {W/2, W/4, 16, 8, 4}, kept when 2 <= R <= W/2, largest (cheapest) first."""
    return sorted({r for r in (window // 2, window // 4, 16, 8, 4) if 2 <= r <= window // 2}, reverse=True)


def _ids(model: Model, text: str, max_tokens: int) -> np.ndarray:
    ids = np.asarray(model.vocab.encode(text[: max_tokens + 1]), np.int32)
    if len(ids) < 2:
        raise MofError("the text is too short: need at least 2 characters")
    return ids


def policy_table(model: Model, text: str, max_tokens: int = DEFAULT_TOKENS, source: str = "built-in",
                 log: Optional[Callable[[str], None]] = None) -> dict:
    """Measure every policy on ``text`` at ``model``'s precision (``add_timings`` adds another
    precision's ms per token)."""
    W = model.config.window
    ids = _ids(model, text, max_tokens)
    unknown = float(np.mean([c not in model.vocab.ids for c in text[: max_tokens + 1]]))
    feed, targets = ids[:-1], ids[1:]
    reference = exact_logits(model, feed)                        # [N, V], batched: the oracle
    ppl_exact = perplexity(reference, targets)
    rows = []
    for R in [PLAIN] + candidate_refills(W):
        row = {"policy": "plain" if R == PLAIN else f"R={R}", "refill_every": R,
               "keep": W if R == PLAIN else W - R + 1}
        logits, ms = _run(model, row, feed)
        ppl = perplexity(logits, targets)
        c = compare(reference, logits)
        rows.append({**row, "perplexity": ppl, "perplexity_change": ppl / ppl_exact - 1, "mean_kl": c["mean_kl"],
                     "top1_agreement": c["top1_agreement"], "ms_per_token": {model.precision: ms}})
    exact_row = {"policy": "exact", "refill_every": 1, "keep": W}
    rows.append({**exact_row, "perplexity": ppl_exact, "perplexity_change": 0.0, "mean_kl": 0.0,
                 "top1_agreement": 1.0, "ms_per_token": {model.precision: _run(model, exact_row, feed)[1]}})
    ok = [r for r in rows if r["refill_every"] not in (PLAIN, 1)
          and gates.policy_passes(r["perplexity_change"], r["mean_kl"])]
    best = max(ok, key=lambda r: r["refill_every"]) if ok else None
    report = {
        "text": source,
        "tokens": int(len(targets)),
        "unknown_char_fraction": unknown,
        "window": W,
        "measured_on": {"precision": model.precision, "cpu": cpu_features()["model"]},
        "exact_perplexity": ppl_exact,
        "policies": rows,
        "recommended_mode": "stream" if best else "exact",
        "recommended_refill_every": best["refill_every"] if best else 1,
        "rule": gates.policy_rule(),
    }
    if log:
        for line in format_table(report).splitlines():
            log("      " + line)
    return report


def _run(model: Model, row: dict, feed: np.ndarray) -> tuple[np.ndarray, float]:
    """One policy teacher-forced over ``feed``: (logits [N, V], ms per token). Exact mode is
    timed on its first EXACT_TIMED_TOKENS tokens only (it is slow; its logits are not needed)."""
    if row["policy"] == "exact":
        decoder, feed = ExactDecoder(model), feed[:EXACT_TIMED_TOKENS]
    elif row["refill_every"] == PLAIN:
        decoder = PlainDecoder(model)
    else:
        decoder = StreamDecoder(model, row["refill_every"])
    t0 = time.perf_counter()
    logits = decoder_logits(decoder, feed)
    return logits, 1e3 * (time.perf_counter() - t0) / len(feed)


def add_timings(report: dict, precision: str, model: Model, text: str, max_tokens: int) -> dict:
    """``report`` with every policy's ms per token at one more precision (same text)."""
    feed = _ids(model, text, max_tokens)[:-1]
    return {**report, "policies": [{**row, "ms_per_token": {**row["ms_per_token"],
                                                            precision: _run(model, row, feed)[1]}}
                                   for row in report["policies"]]}


def format_table(report: dict) -> str:
    precisions = list(report["policies"][0]["ms_per_token"])
    head = (f"{'policy':<8}{'K':>5}{'ppl':>10}{'vs exact':>10}{'mean KL':>10}{'top-1':>8}"
            + "".join(f"{'ms/tok ' + p:>14}" for p in precisions))
    lines = [f"stream policies vs exact on {report['tokens']} tokens of {report['text']} text "
             f"(W = {report['window']}, {report['measured_on']['cpu']}):", head]
    rec = (report["recommended_mode"], report["recommended_refill_every"])
    for r in report["policies"]:
        chosen = (r["policy"] == "exact" and rec[0] == "exact") or \
                 (rec[0] == "stream" and r["refill_every"] == rec[1] and r["policy"] != "exact")
        lines.append(f"{r['policy']:<8}{r['keep']:>5}{r['perplexity']:>10.2f}{r['perplexity_change']:>+10.1%}"
                     f"{r['mean_kl']:>10.4f}{r['top1_agreement']:>8.1%}"
                     + "".join(f"{r['ms_per_token'].get(p, float('nan')):>14.2f}" for p in precisions)
                     + ("  <- recommended" if chosen else ""))
    lines.append(f"recommended: {'stream, refill every ' + str(rec[1]) if rec[0] == 'stream' else 'exact'} "
                 f"({report['rule']})")
    return "\n".join(lines)

