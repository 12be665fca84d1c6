"""Decode graphs side by side: a window pass (exact, refill) and a step, timed in interleaved rounds,
and where each spends its time (onnxruntime's profiler, by op type).

    python benchmarks/window_passes.py GRAPH.onnx [GRAPH.onnx ...] [--threads N] [--rounds 5]
                                       [--profile] [--steps-only] [--step-reps 10]
                                       [--json FILE] [--md FILE]

Each GRAPH is a decode graph (``decode.onnx``, ``decode.int8.onnx``, ``decode.int4.onnx`` of a
bundle, or one built by hand — e.g. by an older checkout of mof, to compare before and after);
a format-2 graph finds its weights file beside it. The model's sizes come from the
``manifest.json`` beside the first graph (or ``--bundle``). Each round runs every graph on the
same random ids:
a 128-token exact pass (``refill`` true, W tokens from a zero state), a 113-token refill
(K = W - R + 1 for W = 128, R = 16) and a one-token step, so the ratios between graphs are
measured side by side. Each graph runs in a worker process of its own (an idle onnxruntime
session's spinning threads would otherwise take the cores from the one being timed), loaded with
mof.runtime's session options; the rounds go to the workers in turn, the order rotated each round,
each worker's turn after ``--settle`` seconds of quiet (default 0.5: onnxruntime's pool threads
spin-wait after a run). The first worker started ran 3-6 % slow for a whole run on an AVX2-only
AMD EPYC, whatever its place in the rounds (the same graph listed twice: full-size fp32 step
14.5 ms in the first worker, 13.1-13.3 ms in a later one; cause not found), so an untimed worker
is started first.

With ``--threads 1`` the time is the process's CPU time (robust on a machine shared with other
jobs); otherwise wall-clock time. ``--profile`` adds one profiled run per graph and pass
(onnxruntime's profiler inflates small ops, so read its table as shares, not as milliseconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mof.bench.rounds import SETTLE_S, rotated, settle_error


def load_config(bundle: Path):
    from mof.runtime.manifest import Manifest
    return Manifest(json.loads((bundle / "manifest.json").read_text()), str(bundle)).config


def feeds(config, ids: np.ndarray, refill: bool) -> dict:
    from mof.runtime.contract import INPUT_IDS, POSITION, REFILL_INPUT
    from mof.runtime.state import State
    B = ids.shape[0]
    return {INPUT_IDS: ids.astype(np.int32), POSITION: np.zeros(B, np.int64),
            **State.zeros(config, B).feeds(config), REFILL_INPUT: np.array(refill)}


def session(path: Path, threads: int, profile: str | None = None):
    import onnxruntime as ort
    from mof.runtime.model import session_options
    so = session_options(threads)
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def passes(config, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, config.vocab_size, (1, 128))
    window = min(128, config.window)
    return {f"exact{window}": feeds(config, ids[:, -window:], True),
            f"refill{window - 15}": feeds(config, ids[:, -(window - 15):], True),
            "step": feeds(config, ids[:, :1], False)}


def worker(graph: Path, bundle: Path, threads: int) -> int:
    """The worker: load ``graph``, then per line of stdin ("PASS REPS") run that pass REPS times and
    print the times (ms) as one JSON line; "" ends it."""
    config = load_config(bundle)
    cases = passes(config)
    clock = time.process_time if threads == 1 else time.perf_counter
    s = session(graph, threads)
    for f in cases.values():                       # warm-up
        s.run(None, f)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        name, reps = line.split()
        out = []
        for _ in range(int(reps)):
            t = clock()
            s.run(None, cases[name])
            out.append((clock() - t) * 1e3)
        print(json.dumps(out), flush=True)
    return 0


def time_interleaved(graphs: dict, bundle: Path, cases: dict, rounds: int, threads: int,
                     step_reps: int = 10, settle: float = SETTLE_S) -> dict:
    """{graph: {pass: [ms, ...]}}: every graph (its own worker process) runs every pass once per
    repetition, the graphs in turn (the order rotated each round, ``settle`` seconds of quiet
    before each graph's turn)."""
    import subprocess

    def start(g: Path):
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(g), "--bundle", str(bundle),
                                 "--threads", str(threads)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if json.loads(proc.stdout.readline()).get("ready") is not True:
            raise SystemExit(f"worker for {g} failed to start")
        return proc

    # a first worker that is not timed: the first one started ran 3-6 % slow for the whole run
    # (the same graph listed twice, AVX2-only AMD EPYC), whatever its place in the rounds
    spare = start(next(iter(graphs.values())))
    procs = {name: start(g) for name, g in graphs.items()}
    out = {g: {c: [] for c in cases} for g in graphs}
    try:
        for k in range(rounds):
            for name in rotated(list(procs), k):
                proc = procs[name]
                time.sleep(settle)
                for c in cases:
                    proc.stdin.write(f"{c} {step_reps if c == 'step' else 3}\n")
                    proc.stdin.flush()
                    out[name][c] += json.loads(proc.stdout.readline())
    finally:
        for proc in [spare, *procs.values()]:
            try:
                proc.stdin.write("\n")
                proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
    return out


def profile_ops(path: Path, f: dict, threads: int, runs: int) -> dict:
    """Kernel time by op type (ms per run, share) from onnxruntime's profiler."""
    with tempfile.TemporaryDirectory() as tmp:
        s = session(path, threads, profile=str(Path(tmp) / "p"))
        for _ in range(runs + 1):
            s.run(None, f)
        events = json.loads(Path(s.end_profiling()).read_text())
    by: dict[str, list] = {}
    seen_first = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"]
        if name not in seen_first:             # the first (warm-up) run is not counted
            seen_first[name] = True
            continue
        op = e["args"].get("op_name", "?")
        by.setdefault(op, [0.0, 0])
        by[op][0] += e["dur"] / 1e3 / runs
        by[op][1] += 1
    total = sum(v[0] for v in by.values()) or 1.0
    return {op: {"ms": round(ms, 3), "share": round(ms / total, 4), "calls": calls // runs}
            for op, (ms, calls) in sorted(by.items(), key=lambda kv: -kv[1][0])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("graphs", nargs="*", type=Path, metavar="GRAPH.onnx")
    p.add_argument("--bundle", type=Path, help="the bundle whose manifest gives the sizes "
                                               "(default: the first graph's folder)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1: CPU time)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="also profile each graph's passes by op type")
    p.add_argument("--steps-only", action="store_true",
                   help="time the one-token step alone (a step costs a few per cent of a window pass, so "
                        "comparing steps needs many more of them: --step-reps per round)")
    p.add_argument("--step-reps", type=int, default=10, help="steps per graph and round (default 10)")
    p.add_argument("--settle", type=float, default=SETTLE_S,
                   help=f"seconds of quiet before each graph's turn in a round (default {SETTLE_S:g}: "
                        "onnxruntime's pool threads spin-wait after a run)")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.bundle, args.threads)
    missing = [str(g) for g in args.graphs if not g.is_file()]
    if missing:
        p.error(f"no such graph: {missing[0]}")
    bundle = args.bundle or args.graphs[0].parent
    config = load_config(bundle)
    names = {}
    for g in args.graphs:                       # unique labels: file name, with its folder if needed
        label = g.name if sum(x.name == g.name for x in args.graphs) == 1 else f"{g.parent.name}/{g.name}"
        names[label] = g
    if not names:
        p.error("give at least one decode graph")
    cases = passes(config)
    if args.steps_only:
        cases = {"step": cases["step"]}
    print(f"timing {', '.join(cases)} of {len(names)} graphs (a worker process each) in {args.rounds} "
          "interleaved rounds …", file=sys.stderr)
    if settle_error(args.settle):
        p.error(settle_error(args.settle))
    times = time_interleaved(names, bundle, cases, args.rounds, args.threads, args.step_reps, args.settle)
    from mof.measure.machine import machine_info
    report = {"machine": machine_info(), "threads": args.threads,
              "clock": "process CPU time" if args.threads == 1 else "wall clock", "graphs": {}}
    base = next(iter(names))
    lines = [f"| graph | " + " | ".join(f"{c} median (min) ms | × {base}" for c in cases) + " |",
             "|---|" + "---|---|" * len(cases)]
    for n in names:
        row = {c: {"median_ms": float(np.median(v)), "min_ms": float(np.min(v))} for c, v in times[n].items()}
        report["graphs"][n] = {"file": str(names[n]), "passes": row}
        cells = []
        for c in cases:
            ratio = row[c]["median_ms"] / float(np.median(times[base][c]))
            cells.append(f"{row[c]['median_ms']:.2f} ({row[c]['min_ms']:.2f}) | {ratio:.2f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if args.profile:
        for n, g in names.items():
            report["graphs"][n]["profile"] = {}
            for c in [c for c in ("refill" + str(min(128, config.window) - 15), "step") if c in cases]:
                print(f"profiling {n} {c} …", file=sys.stderr)
                ops = profile_ops(g, cases[c], args.threads, runs=3 if c != "step" else 20)
                report["graphs"][n]["profile"][c] = ops
                lines += ["", f"{n}, {c}: kernel time by op type (profiled; shares)", "",
                          "| op | share | calls |", "|---|---|---|"]
                lines += [f"| {op} | {v['share']:.1%} | {v['calls']} |" for op, v in list(ops.items())[:12]]
    m = report["machine"]
    text = "\n".join([f"Machine: {m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']}; "
                      f"{args.threads} thread(s), {report['clock']}.", ""] + lines) + "\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.md:
        args.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
