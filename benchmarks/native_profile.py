"""Where a pass's time goes, stock int8 graph against the fused one (mof-quantize --native):
onnxruntime's own profiler, time and runs per op type.

    python benchmarks/native_profile.py BUNDLE [--graph chunk] [--tokens 128] [--threads 2]
                                               [--runs 5] [--top 8] [--out FILE.md]

Each graph file is opened with mof's session settings (the native library registered for the
fused one), fed a batch of one: ``--tokens`` random ids, random states in [-0.95, 0.95] (the probes
mof-quantize --native checks with), warmed up, then profiled over ``--runs`` runs. The table gives,
per op type, the mean kernel time per run and how many times it ran per run. The profiler's own cost
falls on every op run, so graphs with many small ops look slower than they are: compare op types
and counts, and take speed ratios from benchmarks/native_bundle.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def profile(path: Path, library, config, tokens: int, threads: int, runs: int) -> dict:
    """{run_ms, ops: {op type: (ms per run, runs per run)}} of one graph file."""
    import onnxruntime as ort

    from mof.quant.native import probe_feeds
    from mof.runtime.model import session_options
    so = session_options(threads)
    if library:
        so.register_custom_ops_library(str(library))
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "profile")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = probe_feeds(sess, config, {"batch": 1, "chunk": tokens, "seq": tokens}, np.random.default_rng(0), False)
    for _ in range(2):
        sess.run(None, feed)
    for _ in range(runs):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    timed = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
                   key=lambda e: e["ts"])[-runs:]                # the warm-up runs left out
    time, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= timed[0]["ts"]:
            time[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
    return {"run_ms": sum(e["dur"] for e in timed) / runs / 1e3,
            "ops": {op: (time[op] / runs / 1e3, count[op] / runs) for op in time}}


def table(results: dict, top: int) -> list[str]:
    lines = ["| op type | stock ms / runs | native ms / runs |", "|---|---:|---:|"]
    stock, native = results["stock"]["ops"], results["native"]["ops"]
    ranked = sorted(set(stock) | set(native), key=lambda op: -max(stock.get(op, (0, 0))[0], native.get(op, (0, 0))[0]))
    for op in ranked[:top]:
        cells = [f"{d[0]:.2f} / {d[1]:.0f}" if d else "-" for d in (stock.get(op), native.get(op))]
        lines.append(f"| {op} | {cells[0]} | {cells[1]} |")
    runs = {k: sum(c for _, c in r["ops"].values()) for k, r in results.items()}
    lines.append(f"| **a run (profiled)** | **{results['stock']['run_ms']:.2f}** / {runs['stock']:.0f} op runs "
                 f"| **{results['native']['run_ms']:.2f}** / {runs['native']:.0f} op runs |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--graph", default="chunk", choices=("step", "chunk", "decode"))
    ap.add_argument("--tokens", type=int, default=128, help="ids per run (the step graph: 1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--top", type=int, default=10, help="op types shown (the slowest)")
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    from mof.measure.machine import machine_info
    from mof.runtime.bundle import verify_bundle
    from mof.runtime.contract import native_key
    from mof.runtime.native import build
    manifest = verify_bundle(args.bundle)
    fused = manifest.graph_file(args.graph, native_key("int8"))
    if fused is None:
        raise SystemExit(f"native_profile: {args.bundle} has no native int8 graphs (mof-quantize --native)")
    native = build()
    tokens = 1 if args.graph == "step" else args.tokens
    results = {"stock": profile(args.bundle / manifest.graph_file(args.graph, "int8"), None, manifest.config,
                                tokens, args.threads, args.runs),
               "native": profile(args.bundle / fused, native.path, manifest.config, tokens, args.threads, args.runs)}
    import onnxruntime as ort
    head = (f"{args.bundle.name} int8 {args.graph} graph, {tokens} token(s), batch 1, {args.threads} threads; "
            f"{machine_info()['cpu']}, onnxruntime {ort.__version__}, {native.isa} kernels; onnxruntime's profiler, "
            f"{args.runs} runs after 2 (mean per run; nested ops count in their Loop / If too)")
    text = "\n".join([head, "", *table(results, args.top)])
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
