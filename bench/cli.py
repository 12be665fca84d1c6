"""mof-bench: what users care about, measured side by side on this machine.

Each (precision) runs in a fresh worker process, so load time and peak RSS are its own.
Per precision and mode: time to first token and prefill tokens/s for several prompt
lengths; per-token decode latency p50/p95 (model call + sampling) over N tokens.
Also: the weight bytes each mode reads per token and the time onnxruntime's own kernel
needs to read that many (the memory floor), and for every window pass its multiply-accumulates
against this machine's peak (the compute floor; bench/roofline.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mof.measure.machine import machine_info
from mof.runtime.errors import MofError

from . import roofline

PROG = "mof-bench"
SCHEMA_VERSION = 2             # 2: probe-timed floors, window passes (docs/bench.md)
PROVIDER_ENV = "MOF_BENCH_PROVIDER"    # --provider, handed to the worker processes


# --- machine -------------------------------------------------------------------------------
def status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM, RssAnon, …) in MB; NaN where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM on Linux (unlike ru_maxrss it is not
    inherited across exec), ru_maxrss on macOS (bytes there), the peak working set on Windows."""
    peak = status_mb("VmHWM")
    if peak == peak:                                  # not NaN
        return peak
    if sys.platform == "win32":
        return _peak_working_set_mb()
    import resource                                   # POSIX only
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
    """This process's resident memory now in MB (VmRSS on Linux; NaN elsewhere)."""
    return status_mb("VmRSS")


class AnonPeak:
    """The peak of this process's anonymous (private) resident memory while the ``with`` block runs,
    sampled every ``interval`` s from /proc/self/status RssAnon (Linux; NaN elsewhere). RSS also
    counts file pages a program maps — onnxruntime maps the weights file while it repacks the
    weights — which the kernel can drop and re-read under memory pressure; private memory it
    cannot."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak_mb = interval, float("nan")

    @staticmethod
    def read() -> float:
        return status_mb("RssAnon")

    def __enter__(self) -> "AnonPeak":
        import threading
        self._stop = threading.Event()
        self.peak_mb = self.read()

        def sample():
            while not self._stop.wait(self.interval):
                self.peak_mb = max(self.peak_mb, self.read())
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.read())


def reset_peak_rss() -> bool:
    """Start a new peak (Linux: ``/proc/self/clear_refs`` "5" resets VmHWM to the current RSS),
    so the next ``peak_rss_mb`` is the peak of what follows. False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_working_set_mb() -> float:
    """GetProcessMemoryInfo's PeakWorkingSetSize (Windows); NaN if it cannot be read."""
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
                    ("QuotaPeakPagedPoolUsage", ctypes.c_size_t), ("QuotaPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaNonPagedPoolUsage", ctypes.c_size_t), ("PagefileUsage", ctypes.c_size_t),
                    ("PeakPagefileUsage", ctypes.c_size_t)]
    try:
        counters = Counters(cb=ctypes.sizeof(Counters))
        process = ctypes.windll.kernel32.GetCurrentProcess()
        if ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
            return counters.PeakWorkingSetSize / 2**20
    except (AttributeError, OSError):
        pass
    return float("nan")


# --- what a graph reads per token ---------------------------------------------------------
def weight_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decoding call reads: every initializer, except that a Gather
    table contributes one row (the token or position looked up)."""
    try:
        import onnx
    except ImportError:
        return int(path.stat().st_size)
    from onnx import numpy_helper

    from mof.writer.onnx_walk import all_graphs
    model = onnx.load(str(path))
    total = 0
    for graph in all_graphs(model.graph):
        tables = {n.input[0] for n in graph.node if n.op_type == "Gather"}
        for t in graph.initializer:
            arr = numpy_helper.to_array(t)
            if t.name in tables and arr.ndim == 2:
                total += arr.itemsize * arr.shape[1]
            else:
                total += arr.nbytes
    return total


# --- worker ----------------------------------------------------------------------------------
MODES = ("stream", "plain", "exact")   # stream: the refill rule at R; plain: steps only, no refill (the baseline)


def _decoder(model, mode: str, refill_every: int):
    """A fresh decoder for one of MODES; ``refill_every``: the stream mode's R (the others have none)."""
    from mof.measure.plain import PlainDecoder
    from mof.runtime.decoder import make_decoder
    if mode == "plain":
        return PlainDecoder(model)
    return make_decoder(model, mode, refill_every if mode == "stream" else None)


def _worker(bundle: Path, precision: str, modes: Sequence[str], lengths: Sequence[int],
            decode_tokens: int, threads: Optional[int], warmup: int,
            refill_every: Optional[int] = None) -> dict:
    from mof.runtime.decoding import resolve_decoding
    from mof.runtime.model import Model
    from mof.runtime.sampling import Sampler, SamplingConfig
    base = rss_mb()                       # the interpreter, numpy and onnxruntime, before the model
    base_anon = AnonPeak.read()
    reset = reset_peak_rss()
    t = time.perf_counter()
    with AnonPeak() as anon:
        model = Model.load(bundle, precision=precision, threads=threads, providers=os.environ.get(PROVIDER_ENV) or None)
    load_s = time.perf_counter() - t
    load_peak = peak_rss_mb() - base if reset else float("nan")
    cfg = model.config
    R = resolve_decoding(model, "stream", refill_every).refill_every
    rng = np.random.default_rng(0)
    sampler = Sampler(SamplingConfig(seed=0), model.vocab)
    out = []
    for mode in modes:
        ids = rng.integers(0, cfg.vocab_size, size=max(lengths) + decode_tokens + warmup + 8,
                           dtype=np.int32)
        for _ in range(warmup):
            _decoder(model, mode, R).feed(ids[:16])
        prefill = {}
        for L in lengths:          # a fresh decoder reads the prompt: TTFT includes the first sample
            if mode == "plain" and L > cfg.max_positions:
                continue
            t = time.perf_counter()
            dec = _decoder(model, mode, R)
            logits = dec.feed(ids[:L])                          # stream/exact read the last K/W only
            sampler.sample(logits, ids[:L][-cfg.window:])
            dt = time.perf_counter() - t
            prefill[str(L)] = {"ttft_s": dt, "tokens_per_s": L / dt,
                               "tokens": roofline.prefill_tokens(dec, mode, L)}
        P = min(128, max(lengths))
        text = ids[:P].tolist()
        dec = _decoder(model, mode, R)
        logits = dec.feed(text)
        times, passes = [], []
        for _ in range(decode_tokens):
            t = time.perf_counter()
            tok = sampler.sample(logits, text[-cfg.window:])
            text.append(tok)
            refills = dec.refills
            logits = dec.feed([tok])
            times.append(time.perf_counter() - t)
            n = roofline.pass_tokens(dec, mode, refills, len(text))
            if n:
                passes.append([n, times[-1] * 1e3])
        ms = np.array(times) * 1e3
        head = "128" if "128" in prefill else max(prefill, key=int, default=None)   # headline prompt
        out.append({
            "mode": mode, "precision": precision,
            "refill_every": dec.refill_every if mode != "plain" else None,
            "decode_ms_p50": float(np.percentile(ms, 50)), "decode_ms_p95": float(np.percentile(ms, 95)),
            "decode_ms_mean": float(ms.mean()),
            "decode_tokens_per_s": float(1e3 / ms.mean()),
            "prefill": prefill,
            "window_passes": passes,                      # [tokens, ms] of each token that ran one
            "prompt_length": int(head) if head else None,
            "prefill_tokens_per_s": prefill[head]["tokens_per_s"] if head else float("nan"),
            "ttft_s": prefill[head]["ttft_s"] if head else float("nan"),
            "load_s": load_s,
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_load_mb": base,
            "load_peak_rss_mb": load_peak,                # above rss_before_load_mb, during Model.load
            "load_peak_anon_mb": anon.peak_mb - base_anon,  # private memory only (file pages excluded)
            "steady_rss_mb": rss_mb() - base,             # above it, after this mode's decoding
        })
    return {"results": out}


def precision_bytes(manifest, bundle: Path, precision: str) -> tuple[int, int]:
    """(weight bytes, bundle bytes) of what decoding in ``precision`` loads: the weights file, and
    every file it opens."""
    files = {manifest.graph_file(g, precision) for g in manifest.decoding_graphs(precision)}
    weights = manifest.weights_file(precision)
    on_disk = sum((bundle / f).stat().st_size for f in files | {weights})
    return (bundle / weights).stat().st_size, on_disk


def _mode_bytes(manifest, bundle: Path, mode: str, precision: str, R: int) -> tuple[int, int]:
    """(weight bytes read per token, graph file bytes) of a mode: plain reads the step graph's
    weights per token; stream also one chunk pass per R tokens; exact a chunk pass per token."""
    step_file, chunk_file = (bundle / manifest.graph_file(g, precision) for g in ("step", "chunk"))
    if mode == "exact":
        return weight_bytes_per_token(chunk_file), chunk_file.stat().st_size
    wb = weight_bytes_per_token(step_file)
    if mode == "plain":
        return wb, step_file.stat().st_size
    return int(wb + weight_bytes_per_token(chunk_file) / R), step_file.stat().st_size + chunk_file.stat().st_size


# --- driver ----------------------------------------------------------------------------------
def benchmark(bundle: Path, precisions: Sequence[str], modes: Sequence[str], lengths: Sequence[int],
              decode_tokens: int, threads: Optional[int], warmup: int = 4,
              log=lambda m: print(m, file=sys.stderr, flush=True), refill_every: Optional[int] = None) -> dict:
    from mof.runtime.bundle import verify_bundle
    from mof.runtime.decoding import CLI, resolve_decoding
    manifest = verify_bundle(bundle)
    have = [p for p in precisions if manifest.has_precision(p)]
    missing = sorted(set(precisions) - set(have))
    if missing:
        log(f"{PROG}: {bundle.name} has no {', '.join(missing)} graphs (add them with mof-quantize "
            f"[--int4]); skipped")
    if not have:
        raise MofError(f"{bundle} has none of the requested precisions")
    if refill_every is not None and "stream" not in modes:
        raise MofError("--refill-every applies to stream mode only; add stream to --modes")
    R = resolve_decoding(manifest, "stream", refill_every, CLI).refill_every     # the bundle's, or checked
    results, sizes, mode_bytes = [], {}, {}
    for precision in have:
        for mode in modes:
            mode_bytes[mode, precision], sizes[mode, precision] = _mode_bytes(manifest, bundle, mode, precision, R)
    measured = roofline.measure(manifest, bundle, have, mode_bytes, threads, log) if roofline.have_onnx() else None
    if measured is None:
        log(f"{PROG}: {roofline.NO_ONNX}")
    floor = measured["floor"] if measured else {
        f"{m}/{p}": {"weight_bytes_per_token": None, "floor_ms": None} for m, p in mode_bytes}
    for precision in have:
        weight_bytes, bundle_bytes = precision_bytes(manifest, bundle, precision)
        log(f"{PROG}: {precision}: {', '.join(modes)} (stream refills every {R}) …")
        cmd = [sys.executable, "-m", "mof.bench.cli", "--_worker", str(bundle), precision,
               ",".join(modes), ",".join(map(str, lengths)), str(decode_tokens), str(threads or 0),
               str(warmup), str(R)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise MofError(f"benchmark worker failed: {proc.stderr.strip().splitlines()[-1:]}")
        for r in json.loads(proc.stdout)["results"]:
            f = floor[f"{r['mode']}/{precision}"]
            r["floor_multiple"] = r["decode_ms_mean"] / f["floor_ms"] if f["floor_ms"] else float("nan")
            roofline.annotate(r, measured)
            r["graph_bytes"] = sizes[r["mode"], precision]
            r["weight_bytes"], r["bundle_bytes"] = weight_bytes, bundle_bytes
            mb = weight_bytes / 2**20
            r["memory_multiples"] = {"load_peak": r["load_peak_rss_mb"] / mb, "steady": r["steady_rss_mb"] / mb,
                                     "load_peak_anon": r["load_peak_anon_mb"] / mb,
                                     "disk": bundle_bytes / weight_bytes}
            results.append(r)
    return {"schema_version": SCHEMA_VERSION, "bundle": str(bundle),
            "model": manifest["model"], "threads": threads, "decode_tokens": decode_tokens,
            "prompt_lengths": list(lengths),
            "machine": {**machine_info(), **(measured["machine"] if measured else {"read_bandwidth_gbs": None})},
            "floor": floor, "results": results,
            "date": time.strftime("%Y-%m-%d")}


def format_table(report: dict) -> str:
    # one TTFT column per prompt length, each named by it ("-" where a mode skipped that length)
    lengths = [str(L) for L in report.get("prompt_lengths") or sorted(
        {L for r in report["results"] for L in r["prefill"]}, key=int)]
    head = next((r["prompt_length"] for r in report["results"] if r.get("prompt_length")), "")
    ttft_head = "".join(f"{'TTFT@' + L + ' s':>12}" for L in lengths)
    lines = [f"{'mode':<13}{'prec':<6}{'load s':>7}{ttft_head}{'prefill@' + str(head) + ' tok/s':>19}"
             f"{'p50 ms':>8}{'p95 ms':>8}{'mean ms':>8}{'tok/s':>8}{'x floor':>8}{'weights MB':>11}"
             f"{'load RSS':>10}{'private':>9}{'steady':>8}{'disk':>6}"]
    for r in report["results"]:
        label = f"{r['mode']} R={r['refill_every']}" if r["mode"] == "stream" else r["mode"]
        ttft = "".join(f"{r['prefill'][L]['ttft_s']:>12.3f}" if L in r["prefill"] else f"{'-':>12}"
                       for L in lengths)
        lines.append(f"{label:<13}{r['precision']:<6}{r['load_s']:>7.2f}{ttft}"
                     f"{r['prefill_tokens_per_s']:>19.0f}{r['decode_ms_p50']:>8.2f}{r['decode_ms_p95']:>8.2f}"
                     f"{r['decode_ms_mean']:>8.2f}{r['decode_tokens_per_s']:>8.1f}{r['floor_multiple']:>8.1f}"
                     f"{r['weight_bytes'] / 2**20:>11.1f}{r['memory_multiples']['load_peak']:>9.2f}x"
                     f"{r['memory_multiples']['load_peak_anon']:>8.2f}x"
                     f"{r['memory_multiples']['steady']:>7.2f}x{r['memory_multiples']['disk']:>5.2f}x")
    m = report["machine"]
    lines.append("x floor: mean ms / the memory floor, the time onnxruntime's MatMul in the precision's kernel "
                 "needs to read the weight bytes the mode reads per token (stream: a step + a chunk pass per R "
                 f"tokens); the largest probe read {m['read_bandwidth_gbs'] or float('nan'):.1f} GB/s")
    lines.append("load RSS / steady: resident memory above the process's before Model.load (peak while "
                 "loading / after decoding), as multiples of the precision's weight bytes; private: the load "
                 "peak of private memory alone (without the mapped weights file's pages); disk: the files "
                 "decoding opens / weight bytes")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rs = report["results"]
    labels = [f"{r['mode']}\n{r['precision']}" for r in rs]
    tps = [r["decode_tokens_per_s"] for r in rs]
    floors = [1e3 / f if (f := report["floor"][f"{r['mode']}/{r['precision']}"]["floor_ms"]) else float("nan")
              for r in rs]
    colors = ["#4a7ab7"] * len(rs)
    if "tf_reference" in report:                      # benchmarks/headline.py adds the baseline
        labels.insert(0, "TF reference\n(xiaothink)")
        tps.insert(0, 1e3 / report["tf_reference"]["ms_per_token"])
        floors.insert(0, float("nan"))
        colors.insert(0, "#999999")
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 4.4))
    x = np.arange(len(labels))
    ax.bar(x, tps, color=colors, label="measured decode tokens/s")
    for xi, t in zip(x, tps):
        ax.text(xi, t, f"{t:.1f}", ha="center", va="bottom", fontsize=8)
    ax.scatter(x, floors, marker="_", s=900, color="#c0392b", label="memory floor (tokens/s)")
    ax.set_xticks(x, labels)
    ax.set_yscale("log")
    ax.set_ylabel("tokens / s (batch 1)")
    ax.set_title(f"{Path(report['bundle']).name} on {report['machine']['cores']} cores")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_worker"]:
        b, prec, modes, lengths, n, threads, warmup, refill = argv[1:9]
        res = _worker(Path(b), prec, modes.split(","), [int(x) for x in lengths.split(",")],
                      int(n), int(threads) or None, int(warmup), int(refill) or None)
        print(json.dumps(res))
        return 0
    from mof.runtime.bundle_default import DEFAULT_BUNDLE
    from mof.runtime.cli_common import add_provider_flag, checked_provider, utf8_stdio
    from mof.runtime.contract import PRECISIONS
    utf8_stdio()
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", type=Path, default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the shipped demo model)")
    p.add_argument("--precisions", default="fp32,int8,int4",
                   help="comma list of fp32, int8 and int4; those the bundle lacks are skipped "
                        "(default fp32,int8,int4)")
    p.add_argument("--modes", default="stream,exact",
                   help="comma list of stream (the refill rule), plain (stream without refills, for "
                        "comparison) and exact (default stream,exact)")
    p.add_argument("--refill-every", type=int, metavar="R",
                   help="stream mode's refill period (default: the bundle's recommendation)")
    p.add_argument("--prompt-lengths", default="16,128,512", help="comma list (default 16,128,512)")
    p.add_argument("--decode-tokens", type=int, default=128, help="tokens decoded per run (default 128)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    add_provider_flag(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the full report as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="bar chart of tokens/s with the floor")
    args = p.parse_args(argv)
    try:
        lengths = [int(x) for x in args.prompt_lengths.split(",")]
        modes = args.modes.split(",")
        if any(x not in PRECISIONS for x in args.precisions.split(",")):
            p.error(f"--precisions takes {', '.join(PRECISIONS)}")
        if any(m not in MODES for m in modes) or min(lengths) < 1 or args.decode_tokens < 1 \
                or (args.refill_every is not None and args.refill_every < 1):
            raise ValueError
    except ValueError:
        p.error("--modes takes stream/plain/exact, --prompt-lengths positive integers, "
                "--decode-tokens and --refill-every integers >= 1")
    try:
        os.environ[PROVIDER_ENV] = checked_provider(args.provider) or ""    # the workers' (below)
        report = benchmark(args.bundle, args.precisions.split(","), modes, lengths,
                           args.decode_tokens, args.threads, refill_every=args.refill_every)
    except MofError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    report["provider"] = args.provider or "cpu"
    print(format_table(report))
    print()
    print(roofline.format_passes(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
