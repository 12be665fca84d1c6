"""The accuracy report of a quantized precision (int8, int4) against fp32, in exact and stream modes,
with its gates."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from mof.runtime.contract import INT8
from mof.runtime.model import Model

from . import gates
from .accuracy import compare, exact_logits, perplexity, stream_logits
from .calibration import DEFAULT_TOKENS, load_calibration_text
from .machine import describe_machine, measured_on


def quant_report(fp32: Model, quant: Model, text: str, max_tokens: int, source: str) -> dict:
    """``quant`` (int8 or int4: ``quant.precision`` names its keys) against ``fp32`` on the first
    ``max_tokens`` characters of ``text``, exact and stream mode, judged by measure/gates.py."""
    q = quant.precision
    ids = np.asarray(fp32.vocab.encode(text[: max_tokens + 1]), np.int32)
    targets = ids[1:]
    report = {"precision": q, "text": source, "tokens": int(len(targets)), "gates": gates.quant_gates()}
    logits = {}
    for mode, fn in (("exact", exact_logits), ("stream", stream_logits)):
        a, b = fn(fp32, ids[:-1]), fn(quant, ids[:-1])
        logits[mode] = a
        ppl_a, ppl_b = perplexity(a, targets), perplexity(b, targets)
        r = compare(a, b)
        r.update({"fp32_perplexity": ppl_a, f"{q}_perplexity": ppl_b, "perplexity_change": ppl_b / ppl_a - 1})
        r["passed"] = gates.quant_passes(r["top1_agreement"], r["perplexity_change"])
        report[mode] = r
    report["stream_vs_exact_fp32"] = compare(logits["exact"], logits["stream"])
    report["passed"] = report["exact"]["passed"] and report["stream"]["passed"]
    return report


def print_report(report: dict, log: Callable[[str], None]) -> None:
    q = report.get("precision", "int8")
    log(f"      {q} vs fp32 on {report['tokens']} tokens of {report['text']} text:")
    log(f"        {'mode':<7}{'top-1':>8}{'max|Δ|':>9}{'mean|Δ|':>9}{'mean KL':>10}"
        f"{'ppl fp32':>10}{'ppl ' + q:>10}{'change':>8}")
    for mode in ("exact", "stream"):
        r = report[mode]
        mark = "✓" if r["passed"] else "✗"
        log(f"      {mark} {mode:<7}{r['top1_agreement']:>8.1%}{r['max_abs_diff']:>9.3f}"
            f"{r['mean_abs_diff']:>9.4f}{r['mean_kl']:>10.2e}{r['fp32_perplexity']:>10.2f}"
            f"{r[q + '_perplexity']:>10.2f}{r['perplexity_change']:>+8.1%}")
    s = report["stream_vs_exact_fp32"]
    log(f"        stream vs exact (fp32): top-1 {s['top1_agreement']:.1%}, mean KL {s['mean_kl']:.3g}")
    if report.get("measured_on"):
        log(f"        measured on: {describe_machine(report['measured_on'])}")


def quantized_accuracy(bundle_dir: Path, text: Optional[str] = None, eval_tokens: Optional[int] = None,
                       source: Optional[str] = None, threads: Optional[int] = None,
                       precision: str = INT8) -> dict:
    """Measure a bundle's ``precision`` graphs against its fp32 graphs on this machine (exact and
    stream mode). ``text`` defaults to the built-in sample, ``eval_tokens`` to what the manifest's
    report used. Returns the same table as the manifest's accuracy record (with ``measured_on``
    this machine), plus ``recorded``: the manifest's own figures and where they were measured."""
    bundle_dir = Path(bundle_dir)
    fp32 = Model.load(bundle_dir, threads=threads)
    quant = Model.load(bundle_dir, precision=precision, threads=threads)
    rec = fp32.manifest.precision_record(precision)
    recorded = rec.get("accuracy") or {}
    if eval_tokens is None:
        eval_tokens = int(recorded.get("tokens") or DEFAULT_TOKENS)
    if text is None:
        text, source = load_calibration_text(None), "built-in"
    report = quant_report(fp32, quant, text, eval_tokens, source or "given")
    report["measured_on"] = measured_on()
    report["recorded"] = {k: recorded.get(k) for k in ("text", "tokens", "exact", "stream", "measured_on")
                          if k in recorded}
    report["quantization"] = rec.get("quantization")
    return report


def int8_accuracy(bundle_dir: Path, text: Optional[str] = None, eval_tokens: Optional[int] = None,
                  source: Optional[str] = None, threads: Optional[int] = None) -> dict:
    """``quantized_accuracy`` of the int8 graphs (the library's documented entry point)."""
    return quantized_accuracy(bundle_dir, text, eval_tokens, source, threads, INT8)
