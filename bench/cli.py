"""mof-bench: how fast and how lean a bundle decodes on this machine, measured side by side.

Each precision runs in a fresh worker process (``mof.bench.worker``), so its load time and peak
memory are its own. Per precision and mode: time to first token and prefill tokens/s for several
prompt lengths; per-token decode latency p50/p95 (model call + sampling) over N tokens; memory.
With the onnx package: the weight bytes each mode reads per token and the time onnxruntime's own
kernel needs to read that many (the memory floor), and for every window pass its
multiply-accumulates against this machine's peak (the compute floor) and, with the recurrences'
steps read one after another, the recurrence-aware floor (bench/roofline.py).
Precisions the bundle keeps below their accuracy gates are marked. docs/bench.md explains the output.
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

from mof.measure.machine import machine_info
from mof.runtime.files import atomic_write
from mof.runtime.errors import MofError

from . import roofline
from .report import format_passes, format_table, plot, summary
from .worker import MODES, NATIVE_ENV, PROVIDER_ENV, command

PROG = "mof-bench"
SCHEMA_VERSION = 4     # 4: the recurrence-aware floor of each pass, step_floor (docs/bench.md)


# --- what a graph reads per token (needs onnx) ------------------------------------------------
def weight_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decoding call reads: every initializer, except that a Gather
    table contributes one row (the token or position looked up)."""
    import onnx
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


def precision_bytes(manifest, bundle: Path, precision: str) -> tuple[int, int]:
    """(weight bytes, bundle bytes) of what decoding in ``precision`` loads: its weights file, and
    every file it opens (the weights file and the decoding graphs)."""
    weights = manifest.weights_file(precision)
    files = {manifest.graph_file(g, precision) for g in manifest.decoding_graphs(precision)} | {weights}
    return (bundle / weights).stat().st_size, sum((bundle / f).stat().st_size for f in files)


def mode_graph_bytes(manifest, bundle: Path, mode: str, precision: str) -> int:
    """Bytes of the graph files a mode's calls run: exact the chunk graph, plain the step graph,
    stream both."""
    graphs = {"exact": ("chunk",), "plain": ("step",)}.get(mode, ("step", "chunk"))
    return sum((bundle / manifest.graph_file(g, precision)).stat().st_size for g in graphs)


def mode_weight_bytes(manifest, bundle: Path, mode: str, precision: str, R: int) -> int:
    """Weight bytes a mode reads per token: plain the step graph's; stream also one chunk pass per
    R tokens; exact a chunk pass per token."""
    step, chunk = (weight_bytes_per_token(bundle / manifest.graph_file(g, precision)) for g in ("step", "chunk"))
    return {"exact": chunk, "plain": step}.get(mode, int(step + chunk / R))


# --- driver ----------------------------------------------------------------------------------
def _precisions(manifest, bundle: Path, precisions: Sequence[str], log) -> list[str]:
    """The asked precisions the bundle has and this onnxruntime can run (the others said and
    skipped); a MofError when none is left."""
    from mof.runtime import ort_compat
    have = [p for p in precisions if manifest.has_precision(p)]
    missing = sorted(set(precisions) - set(have))
    if missing:
        log(f"{PROG}: {bundle.name} has no {', '.join(missing)} graphs (add them with mof-quantize "
            f"[--int4]); skipped")
    runnable, refused = [], []
    for p in have:
        try:
            ort_compat.check(manifest, p, bundle.name)
            runnable.append(p)
        except MofError as e:
            log(f"{PROG}: {e}; skipped")
            refused.append(str(e))
    if not runnable:
        raise MofError(refused[0] if refused else f"{bundle} has none of the requested precisions")
    return runnable


def _floors(manifest, bundle: Path, precisions, modes, R: int, threads: Optional[int], log) -> Optional[dict]:
    """The roofline (``roofline.measure``), or None without the onnx package."""
    if not roofline.have_onnx():
        return None
    mode_bytes = {(m, p): mode_weight_bytes(manifest, bundle, m, p, R) for p in precisions for m in modes}
    step_bytes = {p: mode_weight_bytes(manifest, bundle, "plain", p, R) for p in precisions}
    return roofline.measure(manifest, bundle, precisions, mode_bytes, step_bytes, threads, log)


def _run_worker(args: list[str]) -> list[dict]:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise MofError(f"benchmark worker failed: {last}")
    return json.loads(proc.stdout)["results"]


def _annotate(r: dict, manifest, bundle: Path, measured: Optional[dict]) -> dict:
    """Add to a worker's result: its floor multiple, window passes, bytes, memory multiples and
    whether its precision is below the accuracy gates."""
    p = r["precision"]
    floor_ms = measured["floor"][f"{r['mode']}/{p}"]["floor_ms"] if measured else None
    r["floor_multiple"] = r["decode_ms_mean"] / floor_ms if floor_ms else None
    roofline.annotate(r, measured)
    r["graph_bytes"] = mode_graph_bytes(manifest, bundle, r["mode"], p)
    r["weight_bytes"], r["bundle_bytes"] = weight_bytes, bundle_bytes = precision_bytes(manifest, bundle, p)
    mb = weight_bytes / 2**20
    r["memory_multiples"] = {"load_peak": r["load_peak_rss_mb"] / mb, "steady": r["steady_rss_mb"] / mb,
                             "load_peak_anon": r["load_peak_anon_mb"] / mb, "disk": bundle_bytes / weight_bytes}
    r["below_accuracy_gates"] = manifest.accuracy_warning(p) is not None
    return r


def benchmark(bundle: Path, precisions: Sequence[str], modes: Sequence[str], lengths: Sequence[int],
              decode_tokens: int, threads: Optional[int], warmup: int = 1,
              log=lambda m: print(m, file=sys.stderr, flush=True), refill_every: Optional[int] = None) -> dict:
    """Run the benchmark; the report (docs/bench.md, "The JSON report"). ``warmup``: untimed runs
    of everything timed, per mode, before the timed one."""
    from mof.runtime.bundle import verify_bundle
    from mof.runtime.decoding import CLI, recommended_refill_every, resolve_decoding
    manifest = verify_bundle(bundle)
    have = _precisions(manifest, bundle, precisions, log)
    if refill_every is not None and "stream" not in modes:
        raise MofError("--refill-every applies to stream mode only; add stream to --modes")
    R = resolve_decoding(manifest, "stream", refill_every, CLI).refill_every     # the bundle's, or checked
    measured = _floors(manifest, bundle, have, modes, R, threads, log)
    results = []
    for precision in have:
        log(f"{PROG}: {precision}: {', '.join(modes)} (stream refills every {R}) …")
        for r in _run_worker(command(bundle, precision, modes, lengths, decode_tokens, threads, warmup, R)):
            results.append(_annotate(r, manifest, bundle, measured))
        log(f"{PROG}: {precision}: kernels: {results[-1].get('kernels', 'stock')}")
    floor = measured["floor"] if measured else {
        f"{m}/{p}": {"weight_bytes_per_token": None, "floor_ms": None} for p in have for m in modes}
    return {"schema_version": SCHEMA_VERSION, "bundle": str(bundle),
            "model": manifest["model"], "threads": threads, "decode_tokens": decode_tokens,
            "prompt_lengths": list(lengths), "warmup_runs": warmup,
            "machine": {**machine_info(), **(measured["machine"] if measured else {"read_bandwidth_gbs": None})},
            "accuracy_warnings": {p: manifest.accuracy_warning(p) for p in have},
            "decoding_default": {"mode": manifest.recommended_mode,       # what mof-run decodes with
                                 "refill_every": recommended_refill_every(manifest, manifest.config)},
            "floor": floor, "step_floor": measured["step_floor"] if measured else None, "results": results,
            "date": time.strftime("%Y-%m-%d")}


def _parser():
    from mof.runtime.bundle_default import DEFAULT_BUNDLE
    from mof.runtime.cli_common import add_native_flag, add_provider_flag
    p = argparse.ArgumentParser(
        prog=PROG, epilog="docs/bench.md explains each column and figure.",
        description="Time how fast and how lean a bundle decodes on this machine: load, time to first "
                    "token, prefill and decode speed, memory, against the machine's floors.")
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
    add_native_flag(p, "--no-native times the stock graphs")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the full report as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="bar chart of tokens/s with the floor "
                   "(needs matplotlib)")
    p.add_argument("--force", action="store_true", help="replace the --json / --plot files if they exist")
    return p


def _check_outputs(p, args) -> None:
    """Before anything runs: the output files can be written, and --plot can draw."""
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is None:
            continue
        if path.exists() and not args.force:
            p.error(f"{flag} {path} exists; add --force to replace it")
        if not path.parent.is_dir():
            p.error(f"{flag} {path}: no directory {path.parent}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot needs matplotlib (pip install matplotlib)")


def _checked(p, args) -> tuple[list[str], list[str], list[int]]:
    """(precisions, modes, prompt lengths) from the flags; a usage error when wrong."""
    from mof.runtime.contract import PRECISIONS
    precisions, modes = args.precisions.split(","), args.modes.split(",")
    if any(x not in PRECISIONS for x in precisions):
        p.error(f"--precisions takes {', '.join(PRECISIONS)}")
    try:
        lengths = [int(x) for x in args.prompt_lengths.split(",")]
        if any(m not in MODES for m in modes) or min(lengths) < 1 or args.decode_tokens < 1 \
                or (args.refill_every is not None and args.refill_every < 1):
            raise ValueError
    except ValueError:
        p.error("--modes takes stream/plain/exact, --prompt-lengths positive integers, "
                "--decode-tokens and --refill-every integers >= 1")
    return precisions, modes, lengths


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mof.runtime.cli_common import checked_provider, utf8_stdio
    utf8_stdio()
    p = _parser()
    args = p.parse_args(argv)
    precisions, modes, lengths = _checked(p, args)
    _check_outputs(p, args)
    try:
        os.environ[PROVIDER_ENV] = checked_provider(args.provider) or ""    # the workers'
        os.environ[NATIVE_ENV] = {True: "1", False: "0", None: ""}[args.native]
        report = benchmark(args.bundle, precisions, modes, lengths, args.decode_tokens, args.threads,
                           refill_every=args.refill_every)
    except MofError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    report["provider"] = args.provider or "cpu"
    print(format_table(report))
    print()
    print(format_passes(report))
    print()
    print(summary(report))
    if args.json:
        atomic_write(args.json, json.dumps(report, indent=2).encode())
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
