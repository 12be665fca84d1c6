"""One decode graph under onnxruntime's execution modes: does running independent branches at once
(ORT_PARALLEL: the RNN expert's GRU, the router's and the transformer blocks on separate cores)
beat splitting each op across the cores (the sequential mode mof.runtime uses)?

    python benchmarks/execution_modes.py GRAPH.onnx [--rounds 7] [--md FILE]

Modes, each in a process of its own (one after the other; an idle session's spinning threads
would take the cores from another's): ``seq2`` (sequential, 2 intra-op threads: mof.runtime's
settings on 2 cores), ``seq1`` (sequential, 1 thread), ``par`` (ORT_PARALLEL, 2 inter-op threads
of 1 intra-op thread each) and ``par2`` (ORT_PARALLEL, 2 inter-op x 2 intra-op threads). Each
times the 128-token exact pass, the 113-token refill and the one-token step of
benchmarks/window_passes.py (same ids), wall clock, median (min).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = {"seq2": ("sequential", 2, 1), "seq1": ("sequential", 1, 1),
         "par": ("parallel", 1, 2), "par2": ("parallel", 2, 2)}


def worker(graph: Path, mode: str, rounds: int) -> dict:
    import onnxruntime as ort
    from mof.runtime.model import session_options
    sys.path.insert(0, str(Path(__file__).parent))
    from window_passes import load_config, passes
    execution, intra, inter = MODES[mode]
    so = session_options(intra)
    if execution == "parallel":
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = inter
    s = ort.InferenceSession(str(graph), sess_options=so, providers=["CPUExecutionProvider"])
    cases = passes(load_config(graph.parent))
    for f in cases.values():
        s.run(None, f)
    out = {}
    for name, f in cases.items():
        ts = []
        for _ in range(rounds * (8 if name == "step" else 1)):
            t = time.perf_counter()
            s.run(None, f)
            ts.append((time.perf_counter() - t) * 1e3)
        out[name] = {"median_ms": float(np.median(ts)), "min_ms": float(min(ts))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graph", type=Path, metavar="GRAPH.onnx")
    p.add_argument("--rounds", type=int, default=7, help="window passes per mode (steps: 8x as many)")
    p.add_argument("--md", type=Path, help="also write the table as Markdown")
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.graph, a.worker, a.rounds)))
        return 0
    from mof.measure.machine import describe_machine, measured_on
    results = {}
    for mode in MODES:
        print(f"{mode} …", file=sys.stderr, flush=True)
        run = subprocess.run([sys.executable, __file__, str(a.graph), "--worker", mode, "--rounds", str(a.rounds)],
                             capture_output=True, text=True, check=True)
        results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    names = list(results["seq2"])
    lines = [f"Machine: {describe_machine(measured_on())}, {os.cpu_count()} cores; {a.graph.name}, wall clock, median (min) ms, "
             f"{a.rounds} window passes and {8 * a.rounds} steps per mode.", "",
             "| mode | execution, intra × inter threads | " + " | ".join(f"{n} | × seq2" for n in names) + " |",
             "|---|---|" + "---|---|" * len(names)]
    for mode, r in results.items():
        execution, intra, inter = MODES[mode]
        cells = [f"{r[n]['median_ms']:.1f} ({r[n]['min_ms']:.1f}) | {r[n]['median_ms'] / results['seq2'][n]['median_ms']:.2f}"
                 for n in names]
        lines.append(f"| {mode} | {execution}, {intra} × {inter} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.md:
        a.md.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
