"""mof-bench's output, from its report (``mof.bench.cli.benchmark``): the speed and memory tables
with their legends (each line at most WIDTH columns), the one-line summary of the fastest setting,
and the plot. docs/bench.md explains every column. Reports saved by earlier versions (without the
accuracy gates, with NaN floors) print too."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Optional

import numpy as np

from .roofline import NO_ONNX

WIDTH = 100                      # columns every line fits in
BELOW_GATES = "*"                # after a precision kept below its accuracy gates


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def label(r: dict) -> str:
    """The decoding setting of a result: "stream R=16", "exact" or "plain"."""
    return f"{r['mode']} R={r['refill_every']}" if r["mode"] == "stream" else r["mode"]


def precision_label(r: dict) -> str:
    return r["precision"] + (BELOW_GATES if r.get("below_accuracy_gates") else "")


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent="  ", break_on_hyphens=False)


def _lengths(report: dict) -> list[str]:
    return [str(L) for L in report.get("prompt_lengths") or sorted(
        {L for r in report["results"] for L in r["prefill"]}, key=int)]


def has_floors(report: dict) -> bool:
    """Whether the memory floors were measured (they need the onnx package)."""
    return any(_number(r.get("floor_multiple")) for r in report["results"])


def speed_table(report: dict) -> list[str]:
    """Mode, precision, TTFT per prompt length (ms), prefill tokens/s, decode p50/p95 ms, tokens/s
    and, when measured, the multiple of the memory floor."""
    lengths, floors = _lengths(report), has_floors(report)
    head = next((r["prompt_length"] for r in report["results"] if r.get("prompt_length")), "")
    lines = ["".join([f"{'mode':<13}{'prec':<6}", *(f"{'TTFT@' + L:>10}" for L in lengths),
                      f"{'prefill@' + str(head):>13}{'p50 ms':>8}{'p95 ms':>8}{'tok/s':>8}",
                      f"{'x floor':>9}" if floors else ""])]
    for r in report["results"]:
        ttft = (f"{r['prefill'][L]['ttft_s'] * 1e3:>10.1f}" if L in r["prefill"] else f"{'-':>10}"
                for L in lengths)
        floor = r.get("floor_multiple")
        lines.append("".join([f"{label(r):<13}{precision_label(r):<6}", *ttft,
                              f"{r['prefill_tokens_per_s']:>13.0f}{r['decode_ms_p50']:>8.2f}",
                              f"{r['decode_ms_p95']:>8.2f}{r['decode_tokens_per_s']:>8.1f}",
                              (f"{floor:>9.1f}" if _number(floor) else f"{'-':>9}") if floors else ""]))
    return lines


def speed_legend(report: dict) -> list[str]:
    head = next((r["prompt_length"] for r in report["results"] if r.get("prompt_length")), "")
    text = [f"TTFT@L: ms from a fresh decoder reading an L-token prompt to its first token sampled; "
            f"prefill@{head}: that prompt's tokens/s; p50/p95 ms, tok/s: each of "
            f"{report.get('decode_tokens', 'the')} decoded tokens (sampling + the model call), after "
            "an untimed run of everything timed."]
    if has_floors(report):
        gbs = report["machine"].get("read_bandwidth_gbs")
        text.append("x floor: mean ms per token / the memory floor, the time onnxruntime's MatMul in the "
                    "precision's kernel needs to read the weight bytes the mode reads per token (stream: a "
                    "step + a chunk pass per R tokens)"
                    + (f"; the largest probe read {gbs:.1f} GB/s." if _number(gbs) else "."))
    else:
        text.append(NO_ONNX)
    text += gate_lines(report) + kernel_lines(report)
    return [line for t in text for line in _wrap(t)]


def kernel_lines(report: dict) -> list[str]:
    """One line per precision that ran mof's native ops (docs/native.md); none when all are stock."""
    kernels = {r["precision"]: r.get("kernels", "stock") for r in report["results"]}
    return [f"{p}: kernels {k} (fused graphs, bit-equal to the stock ones)" for p, k in kernels.items() if k != "stock"]


def gate_lines(report: dict) -> list[str]:
    """One line per precision kept below its accuracy gates (the bundle's own words)."""
    warnings = report.get("accuracy_warnings") or {}
    return [f"{p}{BELOW_GATES}: {w}" for p, w in warnings.items() if w]


def memory_table(report: dict) -> list[str]:
    """Load time, weight bytes and resident memory as multiples of them, per mode and precision."""
    lines = [f"{'mode':<13}{'prec':<6}{'load s':>8}{'weights MB':>12}{'load RSS':>10}{'private':>9}"
             f"{'steady':>8}{'disk':>7}"]
    for r in report["results"]:
        x = r.get("memory_multiples")
        if not x:                                      # reports made before mof-bench measured memory
            continue
        lines.append(f"{label(r):<13}{precision_label(r):<6}{r['load_s']:>8.2f}{r['weight_bytes'] / 2**20:>12.1f}"
                     f"{x['load_peak']:>9.2f}x{x['load_peak_anon']:>8.2f}x{x['steady']:>7.2f}x{x['disk']:>6.2f}x")
    return lines


def _pass_line(r: dict, e: dict, macs: bool) -> str:
    na = lambda x, f: format(x, f) if x is not None else "-"     # noqa: E731
    what = f"prefill {e['prompt_length']}" if e["pass"] == "prefill" else e["pass"]
    return (f"{label(r) + ' ' + what:<26}{precision_label(r):<6}{e['tokens']:>7}{e['count']:>6}"
            f"{e['ms_p50']:>8.2f}{e['ms_p95']:>8.2f}"
            + (f"{na(e['macs'] and e['macs'] / 1e6, '.1f'):>9}{na(e['gmacs_per_s'], '.1f'):>8}"
               f"{na(e['compute_floor_multiple'], '.1f'):>10}{na(e.get('recurrence_floor_multiple'), '.1f'):>12}"
               if macs else ""))


def format_passes(report: dict) -> str:
    """The window-pass table: one line per pass kind of each result (the MAC and floor columns
    only when they were counted: they need the onnx package)."""
    macs = any(e.get("macs") is not None for r in report["results"] for e in r.get("passes", []))
    lines = [f"{'window pass':<26}{'prec':<6}{'tokens':>7}{'count':>6}{'p50 ms':>8}{'p95 ms':>8}"
             + (f"{'MMAC':>9}{'GMAC/s':>8}{'x compute':>10}{'x rec floor':>12}" if macs else "")]
    lines += [_pass_line(r, e, macs) for r in report["results"] for e in r.get("passes", [])]
    notes = []
    peaks = report["machine"].get("peak_gmacs") or {}
    if peaks:
        notes.append("x compute: p50 / the compute floor, the pass's MACs (decode graph, batch 1) at this "
                     "machine's peak: " + "; ".join(f"{p} {v['kernel']} {v['gmacs']:.0f} GMAC/s"
                                                     for p, v in peaks.items())
                     + (" (int8 both: " + ", ".join(f"{k} {g:.0f}" for k, g in peaks['int8']['measured'].items())
                        + ")" if "int8" in peaks else ""))
    rec = report["machine"].get("recurrence_probes") or {}
    if rec:
        notes.append("x rec floor: p50 / the recurrence-aware floor: the MACs outside the GRUs' step "
                     "products at the peak, plus per step (tokens per GRU) each GRU's recurrent matrix "
                     "read at the speed probed for its size; a step of the GRUs reads "
                     + ", ".join(f"{p} {sum(w['weight_bytes'] for w in ws.values()) / 1e3:.0f} kB in "
                                 f"{sum(w['step_us'] for w in ws.values()):.1f} us" for p, ws in rec.items()))
    notes += step_floor_lines(report)
    notes.append("prefill and refill/exact times are whole tokens (the pass + sampling); refill rows are "
                 "stream's refill p50/p95")
    return "\n".join(lines + [w for n in notes for w in _wrap(n)])


def step_floor_lines(report: dict) -> list[str]:
    """One line: a plain step's memory floor and recurrence-aware floor, per precision."""
    steps = report.get("step_floor") or {}
    if not steps:
        return []
    return ["a plain step (one token, each GRU one step): memory floor "
            + ", ".join(f"{p} {f['floor_ms']:.3f} ms" for p, f in steps.items())
            + " (every weight read once, the recurrent matrices too); recurrence-aware floor "
            + ", ".join(f"{p} {f['recurrence_floor_ms']:.3f}" for p, f in steps.items())
            + " ms; the larger binds"]


MEMORY_LEGEND = ("load RSS / steady: resident memory above the process's before Model.load (peak while "
                 "loading / after decoding), as multiples of the precision's weight bytes; private: the "
                 "load peak of private memory alone (without the mapped weights file's pages); disk: the "
                 "files decoding opens / weight bytes.")


def format_table(report: dict) -> str:
    """The speed table and the memory table, each with its legend."""
    return "\n".join([*speed_table(report), *speed_legend(report), "",
                      *memory_table(report), *_wrap(MEMORY_LEGEND)])


def fastest(report: dict):
    """The fastest decoding setting within the accuracy gates (plain, a comparison baseline no
    tool offers, is not a setting), or None."""
    usable = [r for r in report["results"] if r["mode"] != "plain" and not r.get("below_accuracy_gates")]
    return max(usable, key=lambda r: r["decode_tokens_per_s"], default=None)


def run_flags(r: dict, default: Optional[dict]) -> list[str]:
    """The mof-run flags that decode as result ``r`` does: only those the bundle's defaults
    (``default``: its recommended mode and R; None: not recorded, every flag) do not already give."""
    flags = {"fp32": [], "int8": ["--int8"], "int4": ["--int4"]}[r["precision"]]
    default = default or {}
    if r["mode"] != default.get("mode"):
        flags += ["--mode", r["mode"]]
    if r["mode"] == "stream" and (r["refill_every"] != default.get("refill_every") or "--mode" in flags):
        flags += ["--refill-every", str(r["refill_every"])]
    return flags


def summary(report: dict) -> str:
    """One line: the fastest setting, its speed and how to run it."""
    best = fastest(report)
    left_out = sorted({precision_label(r) for r in report["results"] if r.get("below_accuracy_gates")})
    if best is None:
        return "fastest: none measured within its accuracy gates (" + ", ".join(left_out) + ")"
    flags = run_flags(best, report.get("decoding_default"))
    command = " ".join(["mof-run", *flags]) if flags else "mof-run's default"
    kernels = best.get("kernels", "stock")
    native = "" if kernels == "stock" else f", kernels {kernels}"
    line = f"fastest: {label(best)} {best['precision']}{native}, {best['decode_tokens_per_s']:.0f} tok/s ({command})"
    return line + (f"; {', '.join(left_out)} not counted" if left_out else "")


def series(report: dict) -> dict:
    """What the plot draws: bar labels, measured tokens/s, the memory floor in tokens/s (NaN where
    not measured) and which bars are below their accuracy gates (hatched)."""
    rs = report["results"]
    floors = [report["floor"][f"{r['mode']}/{r['precision']}"].get("floor_ms") for r in rs]
    out = {"labels": [f"{r['mode']}\n{precision_label(r)}" for r in rs],
           "tokens_per_s": [r["decode_tokens_per_s"] for r in rs],
           "floor_tokens_per_s": [1e3 / f if _number(f) and f else float("nan") for f in floors],
           "below_gates": [bool(r.get("below_accuracy_gates")) for r in rs],
           "colors": ["#4a7ab7"] * len(rs)}
    if "tf_reference" in report:                      # benchmarks/headline.py adds the baseline
        for key, value in (("labels", "TF reference\n(xiaothink)"),
                           ("tokens_per_s", 1e3 / report["tf_reference"]["ms_per_token"]),
                           ("floor_tokens_per_s", float("nan")), ("below_gates", False), ("colors", "#999999")):
            out[key].insert(0, value)
    return out


def figure(report: dict):
    """The bar chart of tokens/s per setting with the memory floor (a matplotlib Figure)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = series(report)
    fig, ax = plt.subplots(figsize=(1.6 * len(s["labels"]) + 2, 4.4))
    x = np.arange(len(s["labels"]))
    bars = ax.bar(x, s["tokens_per_s"], color=s["colors"], label="measured decode tokens/s")
    for bar, below in zip(bars, s["below_gates"]):
        if below:
            bar.set_hatch("//")
    for xi, t in zip(x, s["tokens_per_s"]):
        ax.text(xi, t, f"{t:.1f}", ha="center", va="bottom", fontsize=8)
    if any(math.isfinite(f) for f in s["floor_tokens_per_s"]):
        ax.scatter(x, s["floor_tokens_per_s"], marker="_", s=900, color="#c0392b", label="memory floor (tokens/s)")
    ax.set_xticks(x, s["labels"])
    ax.set_yscale("log")
    ax.set_ylabel("tokens / s (batch 1)")
    ax.set_title(f"{Path(report['bundle']).name} on {report['machine']['cores']} cores"
                 + (f" ({BELOW_GATES}, hatched: below its accuracy gates)" if any(s["below_gates"]) else ""))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    fig.tight_layout()
    return fig


def plot(report: dict, path: Path) -> None:
    """The figure written to ``path`` (PNG, or the format its suffix names), whole or not at all."""
    import io

    import matplotlib.pyplot as plt

    from mof.runtime.files import atomic_write
    fig = figure(report)
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix[1:] or "png", dpi=120)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
