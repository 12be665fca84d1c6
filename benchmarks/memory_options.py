"""How to hold a bundle's weights in onnxruntime: memory and speed of the options, side by side.

    python benchmarks/memory_options.py BUNDLE [--precision int8] [--rounds 6] [--out DIR]

BUNDLE: a format-2 bundle with a decode graph (e.g. /tmp/mof-headline/t6_beta_dense.mof after
``python benchmarks/headline.py``). Options:

- ``two sessions``: step.onnx and chunk.onnx, each its own session (each packs its own copy);
- ``decode graph``: decode.onnx, one session (what mof.runtime loads);
- each also with ``session.disable_prepacking`` (onnxruntime reads the mapped weights file
  as it is, no packed copy).

Memory: each option loads in a fresh process (resident memory above the process's before
loading: the peak while loading, then after one chunk pass of 65 tokens and 20 steps), as a
multiple of the precision's weight bytes. Speed: all options in one process, interleaved
rounds of 20 one-token steps and 2 chunk passes (medians), so the machine's drift hits them
alike. Writes memory_options-<precision>.{json,md} under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OPTIONS = {                                    # name -> (graphs, disable prepacking)
    "two sessions": (("step", "chunk"), False),
    "two sessions, no prepacking": (("step", "chunk"), True),
    "decode graph": (("decode",), False),
    "decode graph, no prepacking": (("decode",), True),
}


def sessions(bundle: Path, precision: str, option: str):
    import onnxruntime as ort
    from mof.runtime.manifest import Manifest
    from mof.runtime.model import session_options
    m = Manifest(json.loads((bundle / "manifest.json").read_text()), str(bundle))
    graphs, no_prepack = OPTIONS[option]
    so = session_options(None)
    if no_prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    return {g: ort.InferenceSession(str(bundle / m.graph_file(g, precision)), so,
                                    providers=["CPUExecutionProvider"]) for g in graphs}


def runners(sess: dict, vocab_size: int):
    """(one-token step, chunk pass of 65 tokens) callables for an option's sessions."""
    main = sess.get("decode") or sess["step"]
    state = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
             for i in main.get_inputs() if i.name.startswith("state.")}
    step_feeds = {"input_ids": np.array([[5]], np.int32), "position": np.array([3], np.int64), **state}
    ids = np.random.default_rng(0).integers(0, vocab_size, (1, 65)).astype(np.int32)
    if "decode" in sess:
        return (lambda: main.run(None, {**step_feeds, "refill": np.array(False)}),
                lambda: main.run(None, {**step_feeds, "input_ids": ids, "refill": np.array(True)}))
    return (lambda: sess["step"].run(None, step_feeds),
            lambda: sess["chunk"].run(None, {"input_ids": ids}))


def _status() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out


def memory_worker(bundle: Path, precision: str, option: str) -> dict:
    base = _status()["VmRSS"]
    Path("/proc/self/clear_refs").write_text("5")
    t = time.perf_counter()
    sess = sessions(bundle, precision, option)
    load_s = time.perf_counter() - t
    peak = _status()["VmHWM"] - base
    step, chunk = runners(sess, json.loads((bundle / "manifest.json").read_text())["model"]["vocab_size"])
    chunk()
    for _ in range(20):
        step()
    return {"load_s": load_s, "load_peak_mb": peak, "steady_mb": _status()["VmRSS"] - base}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--precision", default="int8", choices=("fp32", "int8", "int4"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", type=Path, default=HERE / "results" / time.strftime("%Y-%m-%d"))
    ap.add_argument("--_memory", nargs=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._memory:
        print(json.dumps(memory_worker(args.bundle, args.precision, args._memory[0])))
        return 0
    from mof.measure.machine import cpu_name
    from mof.runtime.manifest import Manifest
    import onnxruntime as ort
    m = Manifest(json.loads((args.bundle / "manifest.json").read_text()), str(args.bundle))
    weights_mb = (args.bundle / m.weights_file(args.precision)).stat().st_size / 2**20
    memory = {}
    for option in OPTIONS:
        out = subprocess.run([sys.executable, __file__, str(args.bundle), "--precision", args.precision,
                              "--_memory", option], capture_output=True, text=True, check=True)
        memory[option] = json.loads(out.stdout)
        print(f"{option}: {memory[option]}", file=sys.stderr)
    timed = {o: runners(sessions(args.bundle, args.precision, o), m.config.vocab_size) for o in OPTIONS}
    ms = {o: {"step": [], "chunk": []} for o in OPTIONS}
    for _ in range(args.rounds):
        for o, (step, chunk) in timed.items():
            for kind, fn, n in (("step", step, 20), ("chunk", chunk, 2)):
                for _ in range(n):
                    t = time.perf_counter()
                    fn()
                    ms[o][kind].append((time.perf_counter() - t) * 1e3)
    base = "two sessions"
    rows = []
    for o in OPTIONS:
        step, chunk = float(np.median(ms[o]["step"])), float(np.median(ms[o]["chunk"]))
        rows.append({"option": o, **memory[o], "load_peak_x": memory[o]["load_peak_mb"] / weights_mb,
                     "steady_x": memory[o]["steady_mb"] / weights_mb, "step_ms": step, "chunk65_ms": chunk})
    ref = next(r for r in rows if r["option"] == base)
    for r in rows:
        r["step_vs_two_sessions"] = r["step_ms"] / ref["step_ms"]
        r["chunk_vs_two_sessions"] = r["chunk65_ms"] / ref["chunk65_ms"]
    report = {"bundle": str(args.bundle), "precision": args.precision, "weights_mb": weights_mb,
              "cpu": cpu_name(), "onnxruntime": ort.__version__, "date": time.strftime("%Y-%m-%d"),
              "rounds": args.rounds, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"memory_options-{args.precision}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    md = [f"# Holding the weights: {args.precision}, {args.bundle.name} ({weights_mb:.0f} MB of weights), "
          f"{report['date']}", "",
          f"{report['cpu']}, onnxruntime {report['onnxruntime']}. Memory: a fresh process per option, "
          "resident memory above the process's before loading (MB = 2^20 bytes). Speed: medians of "
          f"{args.rounds} interleaved rounds in one process (20 one-token steps, 2 chunk passes of 65 tokens).", "",
          "| option | load peak RSS | steady RSS | one-token step ms | chunk pass ms |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['option']} | {r['load_peak_mb']:.0f} MB ({r['load_peak_x']:.2f}×) | "
                  f"{r['steady_mb']:.0f} MB ({r['steady_x']:.2f}×) | {r['step_ms']:.2f} "
                  f"({r['step_vs_two_sessions']:.2f}×) | {r['chunk65_ms']:.1f} ({r['chunk_vs_two_sessions']:.2f}×) |")
    md += ["", f"Reproduce: `python benchmarks/memory_options.py {args.bundle} --precision {args.precision}`."]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
