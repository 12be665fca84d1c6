"""A bundle's logits on emulated Linux aarch64 against native x86: per precision (fp32, int8, int4,
each the bundle has) and qemu CPU model, the largest |Δlogit| and the top-1 agreement.

    sudo python benchmarks/arm64_logits.py BUNDLE [BUNDLE ...] [--cpu MODEL]... [--ort VERSION]
                                           [--md FILE] [--json FILE]
    python benchmarks/arm64_logits.py --dump DIR BUNDLE [BUNDLE ...]   # this machine's logits only

The same fixed inputs (seed 0) go through every precision: exact window passes over 4 x 128 random
ids (the last W of each row), the same rows one at a time (batch 1), a short window pass (4 x 8), the
chunk graph over all 128 ids, and stream decoding (a 4 x 8 prefill, then 16 one-token steps; and the
same for one row). The logits are computed natively, then in the Debian arm64 root that .ci/arm64
makes (qemu-user, once per CPU model; default cortex-a72, without the dot-product instructions, and
"max,sve=off", with dotprod and i8mm), with the same onnxruntime version; the emulated runs need root
(.ci/arm64's mounts). Each row of logits is a next-token distribution; "top-1" counts the rows whose
largest logit is the same token as natively.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
ARM64 = CHECKOUT / ".ci" / "arm64"
PRECISIONS = ("fp32", "int8", "int4")
DEFAULT_CPUS = ("cortex-a72", "max,sve=off")
SEED = 0
ROWS, LENGTH = 4, 128          # the exact passes' ids: 4 rows x 128 random ids
SHORT = 8                      # a short window pass, and the stream's prefill
STEPS = 16                     # one-token steps after the prefill


class UsageError(Exception):
    """A mistake in the command line: one line on stderr, exit status 2."""


def fixed_ids(vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(window ids int32 [ROWS, LENGTH], stream ids int32 [ROWS, SHORT + STEPS]) from SEED."""
    rng = np.random.default_rng(SEED)
    window = rng.integers(0, vocab_size, (ROWS, LENGTH), dtype=np.int32)
    stream = rng.integers(0, vocab_size, (ROWS, SHORT + STEPS), dtype=np.int32)
    return window, stream


def bundle_precisions(bundle: Path) -> list[str]:
    """The precisions whose decoding graphs the bundle has, in PRECISIONS' order."""
    from mof.runtime.bundle import read_manifest
    m = read_manifest(bundle)
    return [p for p in PRECISIONS
            if m.decoding_graphs(p) and all(m.graph_file(g, p) for g in m.decoding_graphs(p))]


def stream_logits(model, ids: np.ndarray) -> np.ndarray:
    """float32 [STEPS + 1, B, V]: after a SHORT-token prefill, then after each one-token step."""
    logits, state = model.prefill(ids[:, :SHORT])
    out = [logits]
    for t in range(SHORT, ids.shape[1]):
        logits, state = model.step(ids[:, t], state)
        out.append(logits)
    return np.stack(out)


def precision_logits(bundle: Path, precision: str) -> dict[str, np.ndarray]:
    """Case name -> float32 logits [..., V] for the fixed inputs."""
    from mof.runtime import Model
    model = Model.load(bundle, precision=precision, check_onnxruntime=False)
    window, stream = fixed_ids(model.config.vocab_size)
    out = {
        f"exact {ROWS}x{LENGTH}": model.exact_logits(window),
        f"exact 1x{LENGTH} (each row)": np.concatenate([model.exact_logits(row[None]) for row in window]),
        f"exact {ROWS}x{SHORT}": model.exact_logits(window[:, :SHORT]),
        f"stream {ROWS}x({SHORT}+{STEPS})": stream_logits(model, stream),
        f"stream 1x({SHORT}+{STEPS})": stream_logits(model, stream[:1]),
    }
    if model.config.window < LENGTH <= model.config.max_positions:    # else the exact pass's own reading
        out[f"chunk {ROWS}x{LENGTH}"] = model.chunk(window)[0]
    return out


def machine_label() -> str:
    """The CPU these logits were computed on: qemu's model under emulation, else the CPU's name."""
    if os.environ.get("QEMU_CPU"):
        return f"qemu-aarch64 {os.environ['QEMU_CPU']}"
    from mof.measure.machine import cpu_features
    cpu = cpu_features()
    return f"{cpu['model']} ({' '.join(cpu['flags'])})"


def qemu_version() -> str:
    """"qemu-aarch64 7.2.x (...)": the emulator's first --version line."""
    try:
        out = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].replace(" version", "")
    except (OSError, subprocess.SubprocessError, IndexError):
        return "qemu-aarch64"


def dump_name(bundle: Path, where: str) -> str:
    """A dump's file name: the bundle's and the machine's (qemu CPU model, or the architecture)."""
    return f"{bundle.name.removesuffix('.mof')}--{re.sub(r'[^A-Za-z0-9.-]+', '_', where)}.npz"


def dump(bundle: Path, out_dir: Path) -> Path:
    """Every precision's logits for the fixed inputs -> out_dir/dump_name(bundle)."""
    import onnxruntime as ort
    arrays = {"machine": np.asarray(machine_label()), "arch": np.asarray(platform.machine()),
              "onnxruntime": np.asarray(ort.__version__)}
    for p in bundle_precisions(bundle):
        t0 = time.perf_counter()
        for case, logits in precision_logits(bundle, p).items():
            arrays[f"{p}/{case}"] = np.asarray(logits, np.float32)
        print(f"  {bundle.name} {p}: {time.perf_counter() - t0:.1f} s on {machine_label()}", file=sys.stderr)
    path = out_dir / dump_name(bundle, os.environ.get("QEMU_CPU") or platform.machine())
    np.savez_compressed(path, **arrays)
    return path


def compare(ref: dict, other: dict) -> dict[str, dict]:
    """Per precision both hold: max |Δlogit|, mean |Δlogit|, top-1 agreement (rows, agreeing rows),
    the case with the largest Δ, and each case's max |Δlogit|."""
    out = {}
    for p in PRECISIONS:
        cases = [k.split("/", 1)[1] for k in ref if k.startswith(p + "/") and k in other]
        if not cases:
            continue
        worst, worst_case, total, count, rows, agree, per_case = 0.0, "", 0.0, 0, 0, 0, {}
        for case in cases:
            a, b = np.asarray(ref[f"{p}/{case}"]), np.asarray(other[f"{p}/{case}"])
            if a.shape != b.shape:
                raise ValueError(f"{p}/{case}: shapes {a.shape} and {b.shape} differ")
            d = np.abs(a.astype(np.float64) - b)
            per_case[case] = float(d.max())
            if float(d.max()) >= worst:
                worst, worst_case = float(d.max()), case
            total, count = total + float(d.sum()), count + d.size
            a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
            rows += a2.shape[0]
            agree += int((a2.argmax(1) == b2.argmax(1)).sum())
        out[p] = {"max_abs": worst, "mean_abs": total / count, "rows": rows, "top1_agree": agree,
                  "worst_case": worst_case, "cases": per_case}
    return out


def markdown_rows(bundle: str, machine: str, result: dict[str, dict]) -> list[str]:
    return [f"| {bundle} | {p} | {machine} | {r['max_abs']:.2g} | {r['mean_abs']:.2g} | "
            f"{r['top1_agree']}/{r['rows']} | {r['worst_case']} |" for p, r in result.items()]


def run_emulated(bundles: list[Path], out_dir: Path, cpus: list[str], ort_version: str) -> None:
    """This script's --dump in .ci/arm64's root, once per CPU model (one emulated run at a time)."""
    binds = sorted({str(b.parent) for b in bundles} | {str(out_dir)})
    cmd = [str(ARM64), "--ort", ort_version]
    for cpu in cpus:
        cmd += ["--cpu", cpu]
    for b in binds:
        cmd += ["--bind-rw" if b == str(out_dir) else "--bind", b]
    cmd += ["--exec", "--", "python", "benchmarks/arm64_logits.py", "--dump", str(out_dir), *map(str, bundles)]
    print("$ " + " ".join(cmd), file=sys.stderr)
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit("arm64_logits.py: the emulated run failed (see .ci/arm64's output above)")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE", help="a .mof bundle folder")
    ap.add_argument("--dump", type=Path, metavar="DIR",
                    help="only compute this machine's logits into DIR (what the emulated runs do)")
    ap.add_argument("--cpu", action="append", metavar="MODEL",
                    help=f"a qemu CPU model; repeatable (default: {', '.join(DEFAULT_CPUS)})")
    ap.add_argument("--ort", default=None, metavar="VERSION",
                    help="onnxruntime version in the arm64 root (default: this environment's)")
    ap.add_argument("--md", type=Path, help="write the table as markdown here")
    ap.add_argument("--json", type=Path, help="write the figures as JSON here (with each case's max |Δ|)")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep the logits (.npz, one per bundle and machine) in this existing folder")
    args = ap.parse_args(argv)
    for b in args.bundles:
        if not (b / "manifest.json").is_file():
            raise UsageError(f"{b} is not a mof bundle (no manifest.json)")
    if args.dump is not None and not args.dump.is_dir():
        raise UsageError(f"--dump: {args.dump} is not a folder")
    if args.dump is not None and (args.cpu or args.md or args.json or args.ort or args.keep):
        raise UsageError("--dump computes this machine's logits only: no --cpu, --ort, --md, --json or --keep")
    if args.keep is not None and not args.keep.is_dir():
        raise UsageError(f"--keep: {args.keep} is not a folder")
    for out in (args.md, args.json):
        if out is not None and not out.parent.is_dir():
            raise UsageError(f"{out}: folder {out.parent} does not exist")
    return args


def report(bundles: list[Path], out_dir: Path, cpus: list[str]) -> tuple[list[str], dict]:
    """The markdown tables and the figures (bundle -> CPU model -> precision -> compare()'s record)
    from the dumps in out_dir."""
    header = ["| bundle | precision | CPU (vs native x86) | max \\|Δlogit\\| | mean \\|Δlogit\\| | top-1 agreement "
              "(rows) | largest Δ in |", "|---|---|---|---|---|---|---|"]
    rows, figures = [], {}
    for b in bundles:
        native = dict(np.load(out_dir / dump_name(b, platform.machine()), allow_pickle=False))
        figures[b.name] = {"native": str(native["machine"]), "onnxruntime": str(native["onnxruntime"])}
        for cpu in cpus:
            emulated = dict(np.load(out_dir / dump_name(b, cpu), allow_pickle=False))
            if str(emulated["onnxruntime"]) != str(native["onnxruntime"]):
                print(f"note: onnxruntime {emulated['onnxruntime']} emulated, {native['onnxruntime']} "
                      "natively", file=sys.stderr)
            result = compare(native, emulated)
            figures[b.name][cpu] = {"onnxruntime": str(emulated["onnxruntime"]), **result}
            rows += markdown_rows(b.name, f"aarch64, qemu {cpu}", result)
    return header + rows + [""] + case_table(figures), figures


def case_table(figures: dict) -> list[str]:
    """Each case's max |Δlogit|: a row per bundle, precision and CPU model."""
    lines = []
    for bundle, per_cpu in figures.items():
        results = [(cpu, p, r) for cpu, f in per_cpu.items() if isinstance(f, dict) for p, r in f.items()
                   if isinstance(r, dict)]
        if not results:
            continue
        cases = list(results[0][2]["cases"])
        lines += [f"Max |Δlogit| per case, {bundle}:", "",
                  "| precision | CPU | " + " | ".join(cases) + " |", "|---|---|" + "---|" * len(cases)]
        lines += [f"| {p} | {cpu} | " + " | ".join(f"{r['cases'].get(c, float('nan')):.2g}" for c in cases) + " |"
                  for cpu, p, r in sorted(results, key=lambda x: (PRECISIONS.index(x[1]), x[0]))]
        lines.append("")
    return lines


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        bundles = [b.resolve() for b in args.bundles]
        if args.dump is not None:
            for b in bundles:
                print(dump(b, args.dump.resolve()))
            return 0
        if os.geteuid() != 0:
            raise UsageError("the emulated runs need root (.ci/arm64 mounts and chroots); "
                             "--dump DIR computes this machine's logits alone")
        if platform.machine() != "x86_64":
            raise UsageError(f"compares emulated aarch64 with native x86_64; this is {platform.machine()}")
    except UsageError as e:
        print(f"arm64_logits.py: {e}", file=sys.stderr)
        return 2
    import onnxruntime as ort
    cpus = args.cpu or list(DEFAULT_CPUS)
    ort_version = args.ort or ort.__version__
    with tempfile.TemporaryDirectory(prefix="mof-arm64-logits-") as tmp:
        out_dir = Path(tmp)
        for b in bundles:
            dump(b, out_dir)
        t0 = time.perf_counter()
        run_emulated(bundles, out_dir, cpus, ort_version)
        emulated_s = time.perf_counter() - t0
        lines, figures = report(bundles, out_dir, cpus)
        if args.keep is not None:
            for f in out_dir.glob("*.npz"):
                shutil.copy2(f, args.keep / f.name)
    native = next(iter(figures.values()))
    head = (f"Native: {native['native']}, {os.cpu_count()} cores, onnxruntime {native['onnxruntime']}. "
            f"Emulated: Debian bookworm arm64 under {qemu_version()} (.ci/arm64), "
            f"onnxruntime {ort_version}; {emulated_s:.0f} s for the "
            f"emulated runs. Inputs: seed {SEED}, exact passes {ROWS}x{LENGTH} (batch 4 and batch 1), "
            f"{ROWS}x{SHORT}, stream {SHORT}-token prefill + {STEPS} steps (batch 4 and 1), and the chunk "
            f"graph over all {LENGTH} ids where the window W is shorter.")
    text = "\n".join([head, "", *lines, ""])
    print(text)
    if args.md:
        args.md.write_text(f"# ARM64 (emulated) logits vs native x86\n\n"
                           f"`{' '.join(['python', 'benchmarks/arm64_logits.py', *(sys.argv[1:] if argv is None else argv)])}`\n\n{text}")
    if args.json:
        args.json.write_text(json.dumps({"emulated_seconds": round(emulated_s, 1), "bundles": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
