"""A bundle's logits across onnxruntime versions, per precision, on its own shapes.

    python benchmarks/ort_versions.py BUNDLE [BUNDLE ...] [--versions 1.20.1,1.32.0]
                                      [--workdir DIR] [--out FILE.md]
    python benchmarks/ort_versions.py BUNDLE --versions 1.20.1,1.32.0 --emulate-cpu EPYC-Rome
                                      --rows 1 --exact-every 128      # the AVX2-only path, reduced

For every onnxruntime version (default: the newest patch of each minor 1.20 ... 1.32 that pip
offers, VERSIONS) this makes, once, a virtual environment under DIR/venvs/ with only numpy, that
onnxruntime and mof (``pip install --no-deps -e`` this checkout), and runs this script's worker in
it, one version at a time: for each bundle and each precision it has (fp32, int8, int4) the worker
loads the bundle (``Model.load(..., check_onnxruntime=False)``, onnxruntime's default threads) and
computes, for fixed random ids (seed 0, the same for every version):

  exact   exact-mode logits (the window pass) of 4 rows x 128 ids, batch 1, at the prefixes
          ending at 8, 16, ..., 128 (64 passes: M = 8 ... W rows in every product)
  short   the window pass over 5 ids of each row (4 passes)
  stream  row 0: a 16-id prefill through the step graph, then 16 single-token steps (17 logits)
  batch   the 4 rows at once: the window pass over [4, 128], then a [4, 16] prefill and 8 steps of
          [4] (the runtime's graphs take [B, ...])

(--rows N uses the first N rows, --exact-every S ends the exact passes every S ids: a full-size
bundle takes ~1 minute per precision and version with the defaults on 2 cores, ~15 s with
--rows 2 --exact-every 32.)

and keeps them in DIR/dumps/<bundle>/<precision>-<hash of the files it reads>/<version>.npz, so a
rerun only computes the versions, bundles and precisions it has not seen (adding int4 to a bundle
later keeps its fp32 and int8 dumps). Then it prints, per bundle x precision x version, against the
newest version listed: max |Δlogit| and mean |Δlogit| over every logit, the share of logits that
differ by more than 1e-3, top-1 agreement, the max per case, and whether max |Δ| <= 1e-4 (the
export's tolerance) — markdown, also written to --out. The machine (CPU model, the int8-relevant
SIMD flags) is the worker's, recorded in each dump.

--emulate-cpu MODEL also runs each version's worker under ``qemu-x86_64 -cpu MODEL`` (Debian
package qemu-user; its CPUID is MODEL's, so onnxruntime picks that CPU's kernels — EPYC-Rome or
Haswell: AVX2 without AVX-512 or VNNI; qemu reports the host's /proc/cpuinfo, so the machine line
names the host) and compares it with the native run of the same version. Every worker also runs a
one-node kernel probe (run_probe) whose value shows which int8 kernel family it got. Emulation
is ~20-50x slower: --rows and --exact-every reduce the set (their dumps are kept apart).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("1.20.1", "1.21.1", "1.22.1", "1.23.2", "1.24.4", "1.25.1", "1.26.0", "1.27.0", "1.28.0",
            "1.29.0", "1.30.0", "1.31.1", "1.32.0")   # newest patch per minor, `pip index versions onnxruntime`
PRECISIONS = ("fp32", "int8", "int4")
CASES = ("exact", "short", "stream", "batch")
ROWS, LENGTH, SEED = 4, 128, 0                         # the random ids: ROWS x LENGTH, default_rng(SEED)
SHORT, PREFILL, STEPS, BATCH_STEPS = 5, 16, 16, 8
TOLERANCE = 1e-4                                       # the export's max |Δlogit| tolerance
DIFFERS = 1e-3                                         # "a logit differs": the share column's threshold


# Worker: runs inside one version's environment ---------------------------------------------------
def case_logits(model, ids: np.ndarray, every: int = 8) -> dict[str, np.ndarray]:
    """{case: float32 [N, V]} for ids int32 [rows, LENGTH]; exact passes end every ``every`` ids."""
    ends = range(every, ids.shape[1] + 1, every)
    out = {"exact": np.concatenate([model.exact_logits(row[:end]) for row in ids for end in ends]),
           "short": np.concatenate([model.exact_logits(row[:SHORT]) for row in ids])}
    got, state = model.prefill(ids[:1, :PREFILL])
    stream = [got]
    for t in range(PREFILL, PREFILL + STEPS):
        got, state = model.step(ids[:1, t], state)
        stream.append(got)
    out["stream"] = np.concatenate(stream)
    batch = [model.exact_logits(ids)]
    got, state = model.prefill(ids[:, :PREFILL])
    batch.append(got)
    for t in range(PREFILL, PREFILL + BATCH_STEPS):
        got, state = model.step(ids[:, t], state)
        batch.append(got)
    out["batch"] = np.concatenate(batch)
    return {k: v.astype(np.float32) for k, v in out.items()}


def worker(bundle: Path, inputs: Path, out: Path, rows: int = ROWS, every: int = 8, probe: Path | None = None,
           precisions=PRECISIONS) -> None:
    """Every precision of ``bundle`` on the first ``rows`` rows of the ids in ``inputs`` -> ``out``
    (npz), with this onnxruntime; ``probe``: also run that one-node int8 model (the kernel probe)."""
    import onnxruntime as ort
    from mof.measure.machine import cpu_features
    from mof.runtime import Model
    from mof.runtime.bundle import read_manifest
    ids = np.load(inputs)["ids"][:rows]
    manifest = read_manifest(bundle)
    arrays = {"onnxruntime": np.asarray(ort.__version__), "numpy": np.asarray(np.__version__),
              "cpu": np.asarray(json.dumps(cpu_features())), "ids": ids}
    if probe:
        arrays["probe"] = run_probe(probe)
    for p in precisions:
        if p != "fp32" and not manifest.graph_file("chunk", p):
            continue
        t0 = time.time()
        model = Model.load(bundle, precision=p, check_onnxruntime=False)
        for case, logits in case_logits(model, ids, every).items():
            arrays[f"{p}.{case}"] = logits
        del model
        print(f"    {bundle.name} {p}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)


# Environments ------------------------------------------------------------------------------------
def environment(workdir: Path, version: str) -> Path:
    """DIR/venvs/ort-VERSION/bin/python: numpy + onnxruntime==VERSION + mof (--no-deps, editable)."""
    env = workdir / "venvs" / f"ort-{version}"
    python = env / "bin" / "python"
    done = env / ".mof-ready"
    if done.exists():
        return python
    print(f"  making {env} ...", file=sys.stderr, flush=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for cmd in ([sys.executable, "-m", "venv", "--clear", str(env)], pip + ["numpy", f"onnxruntime=={version}"],
                pip + ["--no-deps", "-e", str(ROOT)]):
        if subprocess.run(cmd).returncode:           # pip has said why; the unfinished venv is redone next time
            raise SystemExit(f"error: could not make {env} ({' '.join(cmd[-2:])} failed)")
    got = subprocess.run([str(python), "-c", "import onnxruntime as o; print(o.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if got != version:
        raise SystemExit(f"{env}: onnxruntime {got}, wanted {version}")
    done.write_text(version)
    return python


def run_quiet(cmd: list[str]) -> None:
    """Run a worker; its stderr passes through but for qemu's per-thread "TCG doesn't support
    requested feature" warnings. A failure ends this script."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "TCG doesn't support requested feature" not in line:
            sys.stderr.write(line)
    if proc.wait():
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... exited with {proc.returncode}")


# Inputs and dumps --------------------------------------------------------------------------------
def bundle_key(bundle: Path) -> str:
    """<bundle name>-<first 12 hex of the manifest's sha256>."""
    return f"{bundle.name.removesuffix('.mof')}-{hashlib.sha256((bundle / 'manifest.json').read_bytes()).hexdigest()[:12]}"


def precision_key(bundle: Path, precision: str) -> str | None:
    """<bundle name>/<precision>-<12 hex>: a hash of the sha256s the manifest records for the files
    that precision's decoding reads (graphs, weights) and of the vocabulary size; None when the
    bundle lacks the precision. A precision added later (mof-quantize) leaves the others' dumps valid."""
    from mof.runtime.bundle import read_manifest
    m = read_manifest(bundle)
    graphs = [g for g in ("chunk", "step", "decode", "window") if g in m.get("graphs", {})]
    files = [m.graph_file(g, precision) for g in graphs]
    if not any(files):
        return None
    files += [m.weights_file(precision)] if m.weights_file(precision) else []
    recorded = m.get("files", {})
    text = f"{m.config.vocab_size}|" + "|".join(f"{f}:{recorded.get(f, {}).get('sha256')}" for f in sorted(filter(None, files)))
    return f"{bundle.name.removesuffix('.mof')}/{precision}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def make_inputs(bundle: Path, path: Path) -> Path:
    from mof.runtime.bundle import read_manifest
    vocab = read_manifest(bundle).config.vocab_size
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = np.random.default_rng(SEED).integers(0, vocab, size=(ROWS, LENGTH)).astype(np.int32)
        np.savez(path, ids=ids)
    return path


def run_probe(path: Path) -> np.ndarray:
    """The kernel probe's output: one MatMulIntegerToFloat, uint8 255 x int8 127 over K = 64.
    VNNI (and AMX) kernels give the exact 2,072,640; the AVX2 kernels' pairwise int16 sums
    saturate (32,767 x 32 = 1,048,544), showing which kernel family this CPU got."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": np.full((1, 64), 255, np.uint8)})[0]


def make_probe(path: Path) -> Path | None:
    """Write the probe model (needs onnx; None without it)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    if path.exists():
        return path
    b = numpy_helper.from_array(np.full((64, 1), 127, np.int8), "b")
    one = numpy_helper.from_array(np.ones(1, np.float32), "one")
    node = helper.make_node("MatMulIntegerToFloat", ["a", "b", "one", "one"], ["y"], domain="com.microsoft")
    g = helper.make_graph([node], "probe", [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [b, one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))
    return path


@dataclass(frozen=True)
class Plan:
    """What the workers compute and where (one dump directory per plan)."""
    rows: int = ROWS               # rows of the random ids used (exact: per row; batch: all at once)
    every: int = 8                 # exact passes end every this many ids (128: the full window only)
    emulate: str = ""              # qemu-x86_64 -cpu MODEL for the workers ("" native)
    precisions: tuple = PRECISIONS # the precisions measured (those the bundle has)

    def subdir(self) -> str:
        return "" if (self.rows, self.every) == (ROWS, 8) else f"r{self.rows}-e{self.every}"

    def file(self, version: str, emulated: bool) -> str:
        return f"{version}@{self.emulate}.npz" if emulated else f"{version}.npz"


def measure(bundles: list[Path], versions: list[str], workdir: Path, plan: Plan) -> dict[str, Path]:
    """Make the missing dumps (natively, and under qemu for plan.emulate), one environment at a
    time, in the order of ``versions``; {"<bundle>/<precision>-<hash>": its dump directory}."""
    dirs, todo_keys = {}, {}
    for bundle in bundles:
        for p in plan.precisions:
            key = precision_key(bundle, p)
            if key:
                d = workdir / "dumps" / key / plan.subdir()
                make_inputs(bundle, d / "inputs.npz")
                dirs[key] = d
                todo_keys.setdefault(bundle, []).append((p, key))
    probe = make_probe(workdir / "probe.onnx")
    qemu = None
    if plan.emulate:
        qemu = shutil.which("qemu-x86_64") or shutil.which("qemu-x86_64-static")
        if not qemu:
            raise SystemExit("error: --emulate-cpu needs qemu-x86_64 (Debian package qemu-user)")
    runs = [(False, [])] + ([(True, [qemu, "-cpu", plan.emulate])] if qemu else [])
    for version in versions:
        for emulated, prefix in runs:
            for bundle, keys in todo_keys.items():
                missing = [(p, k) for p, k in keys if not (dirs[k] / plan.file(version, emulated)).exists()]
                if not missing:
                    continue
                python = environment(workdir, version)
                where = f" under qemu -cpu {plan.emulate}" if emulated else ""
                print(f"  onnxruntime {version}{where}: {bundle.name} {', '.join(p for p, _ in missing)}",
                      file=sys.stderr, flush=True)
                for p, k in missing:
                    cmd = prefix + [str(python), __file__, "--worker", str(bundle), "--inputs", str(dirs[k] / "inputs.npz"),
                                    "--dump", str(dirs[k] / plan.file(version, emulated)), "--rows", str(plan.rows),
                                    "--exact-every", str(plan.every), "--precisions", p]
                    run_quiet(cmd + (["--probe", str(probe)] if probe else []))
    return dirs


# Comparison --------------------------------------------------------------------------------------
def compare(ref: dict, other: dict, precision: str) -> dict | None:
    keys = [f"{precision}.{c}" for c in CASES]
    if not all(k in ref and k in other for k in keys):
        return None
    a = np.concatenate([ref[k] for k in keys]).astype(np.float64)
    b = np.concatenate([other[k] for k in keys]).astype(np.float64)
    d = np.abs(a - b)
    return {"max": float(d.max()), "mean": float(d.mean()), "share": float((d > DIFFERS).mean()),
            "top1": float((a.argmax(1) == b.argmax(1)).mean()), "rows": int(a.shape[0]),
            "cases": {c: float(np.abs(ref[f"{precision}.{c}"].astype(np.float64) - other[f"{precision}.{c}"]).max())
                      for c in CASES}}


HEADER = ("| bundle | precision | onnxruntime | max \\|Δ\\| vs {ref} | mean \\|Δ\\| | logits > 1e-3 | top-1 "
          "| max: exact / short / stream / batch | ≤ 1e-4 |\n|---|---|---|---|---|---|---|---|---|")


def row(key: str, p: str, label: str, r: dict) -> str:
    cases = " / ".join(f"{r['cases'][c]:.2g}" for c in CASES)
    return (f"| {key.rsplit('-', 1)[0]} | {p} | {label} | {r['max']:.2g} | {r['mean']:.2g} | {r['share']:.1%} | "
            f"{r['top1']:.2%} | {cases} | {'yes' if r['max'] <= TOLERANCE else '**no**'} |")


def load_dumps(d: Path, names: list[str]) -> dict[str, dict]:
    dumps = {n: dict(np.load(d / n, allow_pickle=False)) for n in names if (d / n).exists()}
    first = next(iter(dumps.values()), None)
    for n, dump in dumps.items():
        if not np.array_equal(dump["ids"], first["ids"]):
            raise SystemExit(f"{d}: {n} was made with other ids; remove the directory")
    return dumps


def report(dirs: dict[str, Path], versions: list[str], plan: Plan) -> tuple[str, dict]:
    """The version table (each version against the newest) and, with plan.emulate, the emulated
    CPU against this one per version."""
    versions = sorted(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
    reference = versions[-1]
    lines, results, machines, probes = [HEADER.format(ref=reference)], {}, set(), {}
    emu_lines = [HEADER.format(ref="native").replace("| onnxruntime |", f"| onnxruntime under -cpu {plan.emulate} |")]
    for key, d in dirs.items():
        bundle, p = key.split("/")[0], key.split("/")[1].split("-")[0]
        dumps = load_dumps(d, [plan.file(v, False) for v in versions] + [plan.file(v, True) for v in versions if plan.emulate])
        ref = dumps.get(plan.file(reference, False))
        for name, dump in dumps.items():
            machines.add(str(dump["cpu"]))
            if "probe" in dump:
                probes[name.removesuffix(".npz")] = float(dump["probe"].ravel()[0])
        for v in versions:
            native = dumps.get(plan.file(v, False))
            r = compare(ref, native, p) if ref is not None and native is not None else None
            if r:
                results.setdefault(bundle, {}).setdefault(p, {})[v] = r
                lines.append(row(bundle, p, v, r))
            emu = dumps.get(plan.file(v, True)) if plan.emulate else None
            r = compare(native, emu, p) if emu is not None and native is not None else None
            if r:
                results.setdefault(bundle, {}).setdefault(f"{p}@{plan.emulate}", {})[v] = r
                emu_lines.append(row(bundle, p, v, r))
    machine = "; ".join(sorted(describe(json.loads(m)) for m in machines))
    exact = f"{plan.rows} x {LENGTH // plan.every}"
    head = (f"Logits per bundle, precision and onnxruntime version: {exact} exact passes (batch 1, ending every "
            f"{plan.every} ids of {plan.rows} random rows of {LENGTH}), {plan.rows} short passes ({SHORT} ids), "
            f"{1 + STEPS} stream logits (a {PREFILL}-id prefill and {STEPS} steps), and a batch of {plan.rows} rows "
            f"(exact pass, prefill, {BATCH_STEPS} steps); each version in its own environment (numpy + onnxruntime "
            f"+ mof --no-deps). Machine: {machine}.\n")
    if probes:
        head += ("Kernel probe (MatMulIntegerToFloat, 255 x 127 over K = 64; exact 2072640, AVX2's saturating "
                 "sums 1048544): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(probes.items())) + ".\n")
    text = head + f"\n### Against onnxruntime {reference}\n\n" + "\n".join(lines) + "\n"
    if plan.emulate:
        text += (f"\n### Under `qemu-x86_64 -cpu {plan.emulate}` (its CPUID: onnxruntime picks that CPU's kernels) "
                 f"against native, same version\n\n" + "\n".join(emu_lines) + "\n")
    return text, results


def describe(cpu: dict) -> str:
    return f"{cpu.get('model')} ({' '.join(cpu.get('flags') or [])})"


def summary(results: dict) -> str:
    """Per bundle and precision: the versions within 1e-4 of the reference, and the others."""
    out = ["", "| bundle | precision | within 1e-4 (reproduce) | differ (max \\|Δ\\|, top-1) |", "|---|---|---|---|"]
    for key, per in results.items():
        for p, rs in per.items():
            same = [v for v, r in rs.items() if r["max"] <= TOLERANCE]
            other = [f"{v} ({r['max']:.2g}, {r['top1']:.1%})" for v, r in rs.items() if r["max"] > TOLERANCE]
            out.append(f"| {key} | {p} | {', '.join(same) or '—'} | {', '.join(other) or '—'} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("bundles", nargs="*", type=Path, metavar="BUNDLE",
                    help="bundles to measure (default: the demo, runtime/demo/t6-demo.mof)")
    ap.add_argument("--versions", default=",".join(VERSIONS),
                    help="comma-separated onnxruntime versions, measured in this order; the newest is the "
                         "reference (default: %(default)s)")
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "mof-ort-versions",
                    help="environments and dumps (default: %(default)s)")
    ap.add_argument("--rows", type=int, default=ROWS, choices=range(1, ROWS + 1), metavar=f"1-{ROWS}",
                    help="rows of random ids to use (default: %(default)s)")
    ap.add_argument("--exact-every", type=int, default=8, metavar="N",
                    help="exact passes end every N ids (default: %(default)s; 128: the full window only)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS),
                    help="the precisions to measure, of those the bundle has (default: %(default)s)")
    ap.add_argument("--emulate-cpu", default="", metavar="QEMU_CPU",
                    help="also run each version under qemu-x86_64 -cpu QEMU_CPU (e.g. EPYC-Rome: AVX2, no "
                         "AVX-512, no VNNI) and compare with the native run of the same version")
    ap.add_argument("--out", type=Path, help="also write the markdown (and FILE.json with the figures) here")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.inputs, args.dump, args.rows, args.exact_every, args.probe,
               tuple(args.precisions.split(",")))
        return 0
    if not 1 <= args.exact_every <= LENGTH:
        print(f"error: --exact-every must be between 1 and {LENGTH}", file=sys.stderr)
        return 2
    bundles = [b.resolve() for b in (args.bundles or [ROOT / "runtime" / "demo" / "t6-demo.mof"])]
    for b in bundles:
        if not (b / "manifest.json").is_file():
            print(f"error: {b} is not a mof bundle (no manifest.json)", file=sys.stderr)
            return 2
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    precisions = tuple(p for p in PRECISIONS if p in args.precisions.split(","))
    if not precisions or set(args.precisions.split(",")) - set(PRECISIONS):
        print(f"error: --precisions takes {', '.join(PRECISIONS)}, got {args.precisions!r}", file=sys.stderr)
        return 2
    plan = Plan(args.rows, args.exact_every, args.emulate_cpu, precisions)
    dirs = measure(bundles, versions, args.workdir.resolve(), plan)
    text, results = report(dirs, versions, plan)
    text += summary(results)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
