"""A bundle's logits across onnxruntime versions, per precision, on its own shapes (issue 36).

    python benchmarks/ort_versions.py BUNDLE [BUNDLE ...] [--versions 1.20.1,1.32.0]
                                      [--workdir DIR] [--out FILE.md]

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

and keeps them in DIR/dumps/<bundle>-<manifest sha>/<version>.npz, so a rerun only computes the
versions and bundles it has not seen. Then it prints, per bundle x precision x version, against the
newest version listed: max |Δlogit| and mean |Δlogit| over every logit, the share of logits that
differ by more than 1e-3, top-1 agreement, the max per case, and whether max |Δ| <= 1e-4 (the
export's tolerance) — markdown, also written to --out. The machine (CPU model, the int8-relevant
SIMD flags) is the worker's, recorded in each dump.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("1.20.1", "1.21.1", "1.22.1", "1.23.2", "1.24.4", "1.25.1", "1.26.0", "1.27.0", "1.28.0",
            "1.29.0", "1.30.0", "1.31.1", "1.32.0")   # newest patch per minor, `pip index versions onnxruntime`
PRECISIONS = ("fp32", "int8", "int4")
CASES = ("exact", "short", "stream", "batch")
ROWS, LENGTH, SEED = 4, 128, 0                         # the random ids: ROWS x LENGTH, default_rng(SEED)
EXACT_ENDS = tuple(range(8, LENGTH + 1, 8))            # exact passes end after these many ids
SHORT, PREFILL, STEPS, BATCH_STEPS = 5, 16, 16, 8
TOLERANCE = 1e-4                                       # the export's max |Δlogit| tolerance
DIFFERS = 1e-3                                         # "a logit differs": the share column's threshold


# Worker: runs inside one version's environment ---------------------------------------------------
def case_logits(model, ids: np.ndarray) -> dict[str, np.ndarray]:
    """{case: float32 [N, V]} for ids int32 [ROWS, LENGTH]."""
    out = {"exact": np.concatenate([model.exact_logits(row[:end]) for row in ids for end in EXACT_ENDS]),
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


def worker(bundle: Path, inputs: Path, out: Path) -> None:
    """Every precision of ``bundle`` on the ids in ``inputs`` -> ``out`` (npz), with this onnxruntime."""
    import onnxruntime as ort
    from mof.measure.machine import cpu_features
    from mof.runtime import Model
    from mof.runtime.bundle import read_manifest
    ids = np.load(inputs)["ids"]
    manifest = read_manifest(bundle)
    arrays = {"onnxruntime": np.asarray(ort.__version__), "numpy": np.asarray(np.__version__),
              "cpu": np.asarray(json.dumps(cpu_features())), "ids": ids}
    for p in PRECISIONS:
        if p != "fp32" and not manifest.graph_file("chunk", p):
            continue
        t0 = time.time()
        model = Model.load(bundle, precision=p, check_onnxruntime=False)
        for case, logits in case_logits(model, ids).items():
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
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["numpy", f"onnxruntime=={version}"], check=True)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True)
    got = subprocess.run([str(python), "-c", "import onnxruntime as o; print(o.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if got != version:
        raise SystemExit(f"{env}: onnxruntime {got}, wanted {version}")
    done.write_text(version)
    return python


# Inputs and dumps --------------------------------------------------------------------------------
def bundle_key(bundle: Path) -> str:
    """<bundle name>-<first 12 hex of the manifest's sha256>: a re-export gets new dumps."""
    return f"{bundle.name.removesuffix('.mof')}-{hashlib.sha256((bundle / 'manifest.json').read_bytes()).hexdigest()[:12]}"


def make_inputs(bundle: Path, path: Path) -> Path:
    from mof.runtime.bundle import read_manifest
    vocab = read_manifest(bundle).config.vocab_size
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = np.random.default_rng(SEED).integers(0, vocab, size=(ROWS, LENGTH)).astype(np.int32)
        np.savez(path, ids=ids)
    return path


def measure(bundles: list[Path], versions: list[str], workdir: Path) -> dict[str, Path]:
    """Make the missing dumps, one environment at a time; {bundle key: its dump directory}."""
    dirs = {}
    for bundle in bundles:
        d = workdir / "dumps" / bundle_key(bundle)
        make_inputs(bundle, d / "inputs.npz")
        dirs[bundle_key(bundle)] = d
    for version in versions:
        todo = [b for b in bundles if not (dirs[bundle_key(b)] / f"{version}.npz").exists()]
        if not todo:
            continue
        python = environment(workdir, version)
        for bundle in todo:
            d = dirs[bundle_key(bundle)]
            print(f"  onnxruntime {version}: {bundle.name}", file=sys.stderr, flush=True)
            subprocess.run([str(python), __file__, "--worker", str(bundle), "--inputs", str(d / "inputs.npz"),
                            "--dump", str(d / f"{version}.npz")], check=True)
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


def report(dirs: dict[str, Path], versions: list[str]) -> tuple[str, dict]:
    reference = versions[-1]
    lines, results, machines = [], {}, set()
    lines.append(f"| bundle | precision | onnxruntime | max \\|Δ\\| vs {reference} | mean \\|Δ\\| | logits > 1e-3 "
                 f"| top-1 | max: exact / short / stream / batch | ≤ 1e-4 |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for key, d in dirs.items():
        dumps = {v: dict(np.load(d / f"{v}.npz", allow_pickle=False)) for v in versions if (d / f"{v}.npz").exists()}
        if reference not in dumps:
            continue
        ref = dumps[reference]
        for dump in dumps.values():
            if not np.array_equal(dump["ids"], ref["ids"]):
                raise SystemExit(f"{d}: dumps made with other ids; remove the directory")
            machines.add(str(dump["cpu"]))
        for p in PRECISIONS:
            for v, dump in dumps.items():
                r = compare(ref, dump, p)
                if r is None:
                    continue
                results.setdefault(key, {}).setdefault(p, {})[v] = r
                cases = " / ".join(f"{r['cases'][c]:.2g}" for c in CASES)
                lines.append(f"| {key.rsplit('-', 1)[0]} | {p} | {v} | {r['max']:.2g} | {r['mean']:.2g} | "
                             f"{r['share']:.1%} | {r['top1']:.2%} | {cases} | "
                             f"{'yes' if r['max'] <= TOLERANCE else '**no**'} |")
    machine = "; ".join(sorted(describe(json.loads(m)) for m in machines))
    head = (f"Logits per bundle, precision and onnxruntime version against onnxruntime {reference}, "
            f"{len(EXACT_ENDS) * ROWS} exact passes, {ROWS} short passes, {1 + STEPS} stream logits, a batch of "
            f"{ROWS} rows (exact pass, prefill, {BATCH_STEPS} steps); each version in its own environment "
            f"(numpy + onnxruntime + mof --no-deps). Machine: {machine}.\n\n")
    return head + "\n".join(lines) + "\n", results


def describe(cpu: dict) -> str:
    return f"{cpu.get('model')} ({' '.join(cpu.get('flags') or [])})"


def summary(results: dict) -> str:
    """Per bundle and precision: the versions within 1e-4 of the reference, and the others."""
    out = ["", "| bundle | precision | reproduce the reference (≤ 1e-4) | differ (max \\|Δ\\|, top-1) |", "|---|---|---|---|"]
    for key, per in results.items():
        for p, rs in per.items():
            same = [v for v, r in rs.items() if r["max"] <= TOLERANCE]
            other = [f"{v} ({r['max']:.2g}, {r['top1']:.1%})" for v, r in rs.items() if r["max"] > TOLERANCE]
            out.append(f"| {key.rsplit('-', 1)[0]} | {p} | {', '.join(same) or '—'} | {', '.join(other) or '—'} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("bundles", nargs="*", type=Path, metavar="BUNDLE",
                    help="bundles to measure (default: the demo, runtime/demo/t6-demo.mof)")
    ap.add_argument("--versions", default=",".join(VERSIONS),
                    help="comma-separated onnxruntime versions, oldest first; the last is the reference "
                         "(default: %(default)s)")
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "mof-ort-versions",
                    help="environments and dumps (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="also write the markdown (and FILE.json with the figures) here")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.inputs, args.dump)
        return 0
    bundles = [b.resolve() for b in (args.bundles or [ROOT / "runtime" / "demo" / "t6-demo.mof"])]
    for b in bundles:
        if not (b / "manifest.json").is_file():
            print(f"error: {b} is not a mof bundle (no manifest.json)", file=sys.stderr)
            return 2
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    dirs = measure(bundles, versions, args.workdir.resolve())
    text, results = report(dirs, versions)
    text += summary(results)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
