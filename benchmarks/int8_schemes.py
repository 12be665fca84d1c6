"""int8 schemes side by side: accuracy on the demo's held-out text, row coupling, step speed, size.

    python benchmarks/int8_schemes.py [--workdir DIR] [--full-size] [--emulate-cpu EPYC-Rome]

Schemes (each applied to the GRU-rewritten fp32 graph, like mof-quantize):
  dynamic-8bit   onnxruntime quantize_dynamic, int8 weights per channel, reduce_range off
                 (what an earlier mof-quantize wrote on VNNI CPUs)
  dynamic-7bit   the same with reduce_range (7-bit weights)
  nbits8-bN      onnxruntime MatMulNBitsQuantizer, 8 bits, block N, symmetric, accuracy_level 4;
                 Gather tables stay fp32. Needs the onnx-ir package (measured with onnx-ir 1.1.0,
                 pip install onnx-ir==1.1.0), which mof itself does not use: without it these
                 schemes are left out
  rowwise-u8s8   mof.quant.rowwise: per-row activations, uint8 x 7-bit int8 MatMulIntegerToFloat
                 (chosen; before it, rowwise-u8u8: the same with 8-bit weights stored uint8 and
                 MatMulInteger uint8 x uint8, results/2026-11-28/int8_schemes.md)

Accuracy is int8 against fp32 on tests/fixtures/demo_ckpt/heldout.txt (512 characters, the
demo manifest's calibration), exact and stream mode. ``--emulate-cpu MODEL`` re-runs the int8
graphs under qemu-x86_64 -cpu MODEL (Debian package qemu-user), so onnxruntime picks the kernels
of that CPU — EPYC-Rome: AVX2 without any VNNI — and the table gets one more column pair.
Speed: step graph, batch 1, one token per call, ms per token, the schemes interleaved (this
VM's speed drifts), on the demo and (--full-size) on a t6_beta_dense-sized step graph with
random weights (V = 16000; built with tests/helpers/synthetic.py + step_graph, ~1 minute).
Writes DIR/results.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))     # synthetic: random checkpoints
DEMO = ROOT / "runtime" / "demo" / "t6-demo.mof"
HELDOUT = ROOT / "tests" / "fixtures" / "demo_ckpt" / "heldout.txt"
GRAPHS = ("decode",)            # what decoding runs (exact passes, refills and steps)


# Schemes -------------------------------------------------------------------------------------
def q_dynamic(model, reduce_range: bool):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from mof.quant.gru_rewrite import gru_to_matmuls
    model, _ = gru_to_matmuls(model)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "a.onnx"), os.path.join(tmp, "b.onnx")
        onnx.save(model, src)
        logging.getLogger().setLevel(logging.ERROR)
        quantize_dynamic(src, dst, per_channel=True, reduce_range=reduce_range, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"], extra_options={"EnableSubgraph": True})
        return onnx.load(dst)


def q_nbits(model, block: int):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from mof.quant.gru_rewrite import gru_to_matmuls
    model, _ = gru_to_matmuls(model)
    logging.getLogger().setLevel(logging.ERROR)
    q = MatMulNBitsQuantizer(model, bits=8, block_size=block, is_symmetric=True, accuracy_level=4)
    q.process()
    return q.model.model


def q_rowwise(model):
    from mof.quant.int8 import quantize_model
    return quantize_model(model)


SCHEMES = {
    "dynamic-8bit": lambda m: q_dynamic(m, False),
    "dynamic-7bit": lambda m: q_dynamic(m, True),
    "nbits8-b32": lambda m: q_nbits(m, 32),
    "nbits8-b128": lambda m: q_nbits(m, 128),
    "rowwise-u8s8": q_rowwise,
}


def cpu_description() -> dict:
    from mof.measure.machine import cpu_features
    return cpu_features()


# Measurements --------------------------------------------------------------------------------
def sessions(files: dict, threads=None):
    import onnxruntime as ort
    from mof.runtime.model import session_options
    so = session_options(threads)
    return {n: ort.InferenceSession(str(f), sess_options=so, providers=["CPUExecutionProvider"])
            for n, f in files.items()}


def model_from(files: dict, precision: str):
    from mof.runtime.model import Model
    from mof.runtime.vocab import Vocabulary
    manifest = json.loads((DEMO / "manifest.json").read_text())
    vocab = Vocabulary.from_json_file(DEMO / "vocab.json")
    return Model(DEMO, manifest, sessions(files), vocab, precision)


def logits_both_modes(model, text: str, tokens: int = 512) -> dict:
    from mof.measure.accuracy import exact_logits, stream_logits
    ids = np.asarray(model.vocab.encode(text[: tokens + 1]), np.int32)
    return {"exact": exact_logits(model, ids[:-1]), "stream": stream_logits(model, ids[:-1]),
            "targets": ids[1:]}


def accuracy(ref: dict, got: dict) -> dict:
    from mof.measure.accuracy import compare
    return {mode: {k: v for k, v in compare(ref[mode], got[mode]).items()
                   if k in ("top1_agreement", "mean_kl", "max_abs_diff")} for mode in ("exact", "stream")}


def row_coupling(model, text: str) -> dict:
    from mof.measure.rows import row_coupling as rc
    return rc(model, model.vocab.encode(text))


def step_feeds(sess, chunk: int = 1):
    feeds = {}
    for i in sess.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in i.shape]
        if i.name == "input_ids":
            feeds[i.name] = (np.arange(chunk, dtype=np.int32)[None] * 7 + 5) % 1000
        elif i.name == "position":
            feeds[i.name] = np.array([10], np.int64)
        else:
            feeds[i.name] = np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float32)
    return feeds


def time_interleaved(files: dict, rounds: int, calls: int, threads=None, clock=time.perf_counter,
                     chunk: int = 1) -> dict:
    """{name: median ms per call} for step graphs at batch 1, ``chunk`` tokens, round-robin."""
    sess = {n: sessions({"step": f}, threads)["step"] for n, f in files.items()}
    feeds = {n: step_feeds(s, chunk) for n, s in sess.items()}
    for n, s in sess.items():
        for _ in range(max(2, 20 // chunk)):
            s.run(None, feeds[n])
    times = {n: [] for n in sess}
    for _ in range(rounds):
        for n, s in sess.items():
            t0 = clock()
            for _ in range(calls):
                s.run(None, feeds[n])
            times[n].append((clock() - t0) / calls * 1e3)
    return {n: float(np.median(v)) for n, v in times.items()}


# Main ----------------------------------------------------------------------------------------
def build(work: Path, full_step: Path | None, schemes, full_schemes=None) -> dict:
    import onnx
    files = {"fp32": {g: DEMO / f"{g}.onnx" for g in GRAPHS}}
    for name in schemes:
        files[name] = {}
        for g in GRAPHS:
            out = work / f"demo.{g}.{name}.onnx"
            if not out.exists():
                onnx.save(SCHEMES[name](onnx.load(str(DEMO / f"{g}.onnx"))), str(out))
            files[name][g] = out
        if full_step and (full_schemes is None or name in full_schemes):
            out = work / f"full.step.{name}.onnx"
            if not out.exists():
                t0 = time.time()
                onnx.save(SCHEMES[name](onnx.load(str(full_step))), str(out))
                print(f"  {name}: full-size step quantized in {time.time() - t0:.0f} s", file=sys.stderr)
            files[name]["full_step"] = out
    if full_step:
        files["fp32"]["full_step"] = full_step
    return files


def make_full_step(work: Path) -> Path:
    out = work / "full.step.fp32.onnx"
    if out.exists():
        return out
    import onnx
    from mof.export.families import T6_TYPES
    from mof.export.step_graph import build_step_graph, checkpoint_getter
    from synthetic import make_checkpoint
    from mof.runtime.config import ModelConfig
    t = T6_TYPES["t6_beta_dense"]
    cfg = ModelConfig(16000, t.embed_dim, t.rnn_units, t.router_units, t.rnn_layers, t.trans_layers,
                      t.num_heads, t.ffn_dim, t.max_positions, t.trans_window, 128)
    prefix = make_checkpoint(work / "full_ckpt", cfg, model_type="t6_beta_dense")
    onnx.save(build_step_graph(cfg, checkpoint_getter(prefix)), str(out))
    return out


def emulated_accuracy(work: Path, cpu: str, schemes) -> dict:
    """Run this script's --measure-int8 under qemu-x86_64 -cpu CPU; returns {scheme: accuracy}."""
    qemu = shutil.which("qemu-x86_64")
    if not qemu:
        raise SystemExit("--emulate-cpu needs qemu-x86_64 (Debian package qemu-user)")
    out, t0 = {}, time.time()
    procs = {}
    pending = list(schemes)
    while pending or procs:                   # two emulators at a time (~7 minutes each)
        while pending and len(procs) < 2:
            name = pending.pop(0)
            procs[name] = subprocess.Popen([qemu, "-cpu", cpu, sys.executable, __file__, "--workdir", str(work),
                                            "--measure-int8", name], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
        name, proc = next(iter(procs.items()))
        stdout, stderr = proc.communicate()
        del procs[name]
        if proc.returncode:
            raise SystemExit(f"emulated run of {name} failed: {stderr[-2000:]}")
        out[name] = json.loads(stdout.strip().splitlines()[-1])
        print(f"  {name} under qemu -cpu {cpu}: done after {time.time() - t0:.0f} s", file=sys.stderr)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mof-int8-schemes")
    p.add_argument("--full-size", action="store_true", help="also time a t6_beta_dense-sized step graph")
    p.add_argument("--emulate-cpu", metavar="QEMU_CPU", help="also measure accuracy under qemu-x86_64 -cpu")
    p.add_argument("--schemes", default=",".join(SCHEMES))
    p.add_argument("--full-schemes", help="schemes to build and time at full size (default: all)")
    p.add_argument("--emulate-schemes", help="schemes to emulate (default: all of --schemes)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--speed-only", action="store_true",
                   help="only time the step graphs (graphs and results.json from an earlier run in DIR)")
    p.add_argument("--no-speed", action="store_true", help="skip the timing")
    p.add_argument("--emulated-results", metavar="[SCHEME=]FILE", action="append", default=[],
                   help="take emulated accuracy from an earlier run: its results.json, or one "
                        "scheme's --measure-int8 output")
    p.add_argument("--measure-int8", metavar="SCHEME", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    schemes = args.schemes.split(",")
    try:
        import onnx_ir  # noqa: F401  (onnxruntime's MatMulNBitsQuantizer imports it)
    except ImportError:
        if any(n.startswith("nbits") for n in schemes):
            print("  onnx-ir is not installed: leaving out the nbits8 schemes", file=sys.stderr)
        schemes = [n for n in schemes if not n.startswith("nbits")]
    text = HELDOUT.read_text(encoding="utf-8")

    if args.measure_int8:                     # child: int8 logits on this (maybe emulated) CPU
        ref = dict(np.load(work / "fp32_logits.npz"))
        m = model_from({g: work / f"demo.{g}.{args.measure_int8}.onnx" for g in GRAPHS}, "int8")
        got = logits_both_modes(m, text)
        out = accuracy(ref, got)
        native = work / f"int8_logits.{args.measure_int8}.npz"
        if native.exists():                   # how far this CPU's int8 logits are from the host's
            nat = dict(np.load(native))
            out["max_abs_diff_vs_host"] = {k: float(np.abs(nat[k] - got[k]).max()) for k in ("exact", "stream")}
        print(json.dumps(out))
        return 0

    full = make_full_step(work) if args.full_size else None
    full_schemes = args.full_schemes.split(",") if args.full_schemes else None
    files = build(work, full, schemes, full_schemes)
    if args.speed_only:
        results = json.loads((work / "results.json").read_text())
        time_all(results, files, schemes, full, args.rounds)
        (work / "results.json").write_text(json.dumps(results, indent=1))
        print(markdown(results))
        return 0
    fp32 = model_from(files["fp32"], "fp32")
    ref = logits_both_modes(fp32, text)
    np.savez(work / "fp32_logits.npz", **ref)
    results = {"cpu": cpu_description(), "python": platform.python_version(), "schemes": {}}
    import onnxruntime
    results["onnxruntime"] = onnxruntime.__version__
    for name in ["fp32"] + schemes:
        m = fp32 if name == "fp32" else model_from({g: files[name][g] for g in GRAPHS}, "int8")
        r = {"row_coupling": row_coupling(m, text),
             "bytes_demo": sum(Path(files[name][g]).stat().st_size for g in GRAPHS)}
        if name != "fp32":
            got = logits_both_modes(m, text)
            np.savez(work / f"int8_logits.{name}.npz", **got)
            r["accuracy"] = accuracy(ref, got)
        if "full_step" in files[name]:
            r["bytes_full_step"] = Path(files[name]["full_step"]).stat().st_size
        results["schemes"][name] = r
        print(f"  measured {name}", file=sys.stderr)
    if args.emulate_cpu:
        results["emulated_cpu"] = args.emulate_cpu
        for name, acc in emulated_accuracy(
                work, args.emulate_cpu, (args.emulate_schemes or args.schemes).split(",")).items():
            results["schemes"][name]["accuracy_emulated"] = acc
    for spec in args.emulated_results:
        results["emulated_cpu"] = args.emulate_cpu or "EPYC-Rome"
        name, _, file = spec.rpartition("=")
        data = json.loads(Path(file).read_text().strip().splitlines()[-1] if name else Path(file).read_text())
        found = {name: data} if name else {n: r["accuracy_emulated"] for n, r in data["schemes"].items()
                                           if "accuracy_emulated" in r}
        for n, acc in found.items():
            if n in results["schemes"]:
                results["schemes"][n]["accuracy_emulated"] = acc
    if not args.no_speed:
        time_all(results, files, schemes, full, args.rounds)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return 0


def time_all(results: dict, files: dict, schemes, full, rounds: int) -> None:
    """Wall time with onnxruntime's default threads (what a user sees) and, less sensitive to
    other processes on a shared machine, CPU time of one intra-op thread."""
    names = ["fp32"] + schemes
    for key, graph, calls in (("demo", "step", 200), ("full", "full_step", 10)):
        if graph == "full_step" and not full:
            continue
        for suffix, kw in (("", {}), ("_cpu1", {"threads": 1, "clock": time.process_time})):
            speed = time_interleaved({n: files[n][graph] for n in names if graph in files[n]}, rounds, calls, **kw)
            for n, ms in speed.items():
                results["schemes"][n][f"step_ms_{key}{suffix}"] = ms
        speed = time_interleaved({n: files[n][graph] for n in names if graph in files[n]}, max(3, rounds // 3),
                                 max(1, calls // 10), chunk=128)
        for n, ms in speed.items():
            results["schemes"][n][f"prefill128_ms_{key}"] = ms
    results["speed_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def markdown(results: dict) -> str:
    emu = results.get("emulated_cpu")
    head = ["scheme", "exact top-1 / KL", "stream top-1 / KL"]
    if emu:
        head += [f"exact top-1 / KL ({emu})", f"stream top-1 / KL ({emu})",
                 f"max abs Δlogit int8 {emu} vs host"]
    head += ["rows: max abs Δlogit exact / step 1 / step 4", "step ms demo (1-thread CPU ms)",
             "step ms full-size (1-thread CPU ms)", "prefill 128 tokens ms demo / full-size",
             "demo decode MB", "full-size step MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    f = lambda a, m: f"{a[m]['top1_agreement']:.1%} / {a[m]['mean_kl']:.5f}"
    for name, r in results["schemes"].items():
        row = [name]
        for key in ("accuracy",) + (("accuracy_emulated",) if emu else ()):
            a = r.get(key)
            row += [f(a, "exact"), f(a, "stream")] if a else (
                ["(reference)", "(reference)"] if name == "fp32" else ["", ""])
        if emu:
            d = (r.get("accuracy_emulated") or {}).get("max_abs_diff_vs_host")
            row.append(f"{max(d.values()):.2g}" if d else "")
        rc = r["row_coupling"]
        row.append(f"{rc['exact']:.2g} / {rc['step_chunk1']:.2g} / {rc['step_chunk4']:.2g}")
        for key, fmt in (("demo", ".3f"), ("full", ".2f")):
            ms, cpu = r.get(f"step_ms_{key}"), r.get(f"step_ms_{key}_cpu1")
            row.append(f"{ms:{fmt}} ({cpu:{fmt}})" if ms is not None and cpu is not None else "")
        pd, pf = r.get("prefill128_ms_demo"), r.get("prefill128_ms_full")
        row.append(" / ".join(f"{v:.1f}" for v in (pd, pf) if v is not None))
        row.append(f"{r['bytes_demo'] / 1e6:.2f}")
        row.append(f"{r['bytes_full_step'] / 1e6:.1f}" if "bytes_full_step" in r else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
