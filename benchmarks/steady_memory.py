"""Where a bundle's steady resident memory goes after window passes, mapping by mapping.

    python benchmarks/steady_memory.py BUNDLE [--precision int8] [--passes 10] [--out DIR] [--force]

mof-bench reports the resident memory above the process's before ``Model.load`` after decoding
as a multiple of the weight bytes (``steady``). This script splits that figure by what holds the
pages (Linux ``/proc/self/smaps``): the heap and anonymous mappings (onnxruntime's packed weights
and the tensors of a pass, freed into the C allocator), onnxruntime's shared library (its code pages,
touched as kernels first run), the bundle's weights file (the tables ``Gather`` reads in place) and
the rest — after loading, after three 128-token exact passes, and after glibc's ``malloc_trim(0)``
(what the allocator keeps of the freed tensors). Each variant runs in a fresh process:

- ``default``: as mof.runtime runs;
- ``fixed mmap threshold``: glibc's ``MALLOC_MMAP_THRESHOLD_=131072`` (every buffer of 128 KiB or more
  its own mapping, returned when freed; glibc otherwise raises the threshold as large buffers are
  freed and keeps them in the heap).

and times ``--passes`` exact passes after the breakdown (median ms), so a variant that saves memory
shows what it costs. Writes steady_memory-<precision>.{json,md} under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = {"default": {}, "fixed mmap threshold": {"MALLOC_MMAP_THRESHOLD_": "131072"}}
MB = 2 ** 20


def by_mapping(weights_file: str) -> dict:
    """Resident MB by kind of mapping, this process."""
    kinds = {"heap and anonymous": 0.0, "onnxruntime library": 0.0, "weights file": 0.0, "other": 0.0}
    kind = "other"
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                path = parts[5] if len(parts) > 5 else ""
                kind = ("heap and anonymous" if path in ("", "[heap]") else
                        "onnxruntime library" if "onnxruntime" in path and ".so" in path else
                        "weights file" if os.path.realpath(path) == weights_file else "other")
            elif line.startswith("Rss:"):
                kinds[kind] += int(line.split()[1]) * 1024 / MB
    return kinds


def worker(bundle: Path, precision: str, passes: int) -> dict:
    import ctypes
    from mof.bench.cli import precision_bytes
    from mof.runtime import Model
    from mof.runtime.bundle import read_manifest
    manifest = read_manifest(bundle)
    weights = os.path.realpath(bundle / manifest.weights_file(precision))
    before = by_mapping(weights)
    model = Model.load(bundle, precision=precision)
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, model.config.window)
    stages = {"loaded": by_mapping(weights)}
    for _ in range(3):
        model.exact_logits(ids)
    stages["after 3 exact passes"] = by_mapping(weights)
    libc = ctypes.CDLL("libc.so.6")
    t0 = time.perf_counter()
    libc.malloc_trim(0)
    trim_ms = (time.perf_counter() - t0) * 1e3
    stages["after malloc_trim(0)"] = by_mapping(weights)
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        model.exact_logits(ids)
        times.append(time.perf_counter() - t0)
    stages[f"after {passes} more passes"] = by_mapping(weights)
    # the precision's weight bytes as mof-bench counts them for its steady multiple
    return {"weights_mb": precision_bytes(manifest, bundle, precision)[0] / MB, "trim_ms": trim_ms,
            "exact_ms_median": float(np.median(times) * 1e3),
            "stages": {s: {k: v - before[k] for k, v in kinds.items()} for s, kinds in stages.items()}}


def render(report: dict) -> str:
    lines = [f"# Steady memory of {report['bundle']} ({report['precision']}), {report['date']}", "",
             f"Machine: {report['cpu']}; resident MB above the process's before `Model.load`, by mapping; "
             f"weights {report['weights_mb']:.1f} MB.", "",
             "| variant | stage | heap and anonymous | onnxruntime library | weights file | other | total (× weights) |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        for stage, kinds in r["stages"].items():
            total = sum(kinds.values())
            lines.append(f"| {name} | {stage} | {kinds['heap and anonymous']:.1f} | {kinds['onnxruntime library']:.1f} | "
                         f"{kinds['weights file']:.1f} | {kinds['other']:.1f} | {total:.1f} "
                         f"({total / report['weights_mb']:.2f}×) |")
    lines += ["", "| variant | 128-token exact pass, median ms | malloc_trim(0) ms |", "|---|---|---|"]
    for name, r in report["variants"].items():
        lines.append(f"| {name} | {r['exact_ms_median']:.1f} | {r['trim_ms']:.2f} |")
    lines += ["", f"Reproduce: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path, help="a bundle directory (e.g. the full-size one benchmarks/headline.py makes)")
    ap.add_argument("--precision", default="int8", help="fp32, int8 or int4 (default int8)")
    ap.add_argument("--passes", type=int, default=10, help="timed exact passes per variant (default 10)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / time.strftime("%Y-%m-%d"),
                    help="where the results go (default benchmarks/results/<today>)")
    ap.add_argument("--force", action="store_true", help="replace existing results")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.bundle, args.precision, args.passes)))
        return 0
    if not sys.platform.startswith("linux"):
        ap.error("needs Linux (/proc/self/smaps and glibc's malloc_trim)")
    if not (args.bundle / "manifest.json").is_file():
        ap.error(f"{args.bundle} is not a bundle (no manifest.json)")
    if not 1 <= args.passes <= 1000:
        ap.error(f"--passes must be between 1 and 1000, got {args.passes}")
    out_json = args.out / f"steady_memory-{args.precision}.json"
    if out_json.exists() and not args.force:
        print(f"steady_memory: {out_json} exists (--force replaces it)", file=sys.stderr)
        return 2
    from mof.measure.machine import describe_machine, measured_on
    cpu = describe_machine(measured_on())
    report = {"date": time.strftime("%Y-%m-%d"), "bundle": str(args.bundle), "precision": args.precision,
              "cpu": cpu, "variants": {},
              "command": "python benchmarks/steady_memory.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    for name, env in VARIANTS.items():
        print(f"steady_memory: {name} …", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, str(args.bundle), "--precision", args.precision,
                               "--passes", str(args.passes), "--worker"],
                              env={**os.environ, **env}, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"steady_memory: the {name} worker failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        report["weights_mb"] = result.pop("weights_mb")
        report["variants"][name] = result
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2))
    md = render(report)
    out_json.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
