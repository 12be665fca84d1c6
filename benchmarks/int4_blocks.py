"""int4 (MatMulNBits) block size, accuracy level and symmetry: accuracy on the demo, speed at full size.

    python benchmarks/int4_blocks.py [--workdir DIR] [--full-size BUNDLE] [--emulate-cpu EPYC-Rome]

Variants (mof.quant.int4.quantize_model_int4 on the demo's fp32 step and chunk graphs):
  b{32,64,128}-l{0,4}-{sym,asym}   block size, MatMulNBits accuracy_level (0: fp32 compute,
                                   4: int8 compute), symmetric int4 or uint4 with zero points;
                                   Gather tables int8 per row (rowwise.py)
  b32-l4-sym-gq4                   the same, but the Gather tables int4 too (GatherBlockQuantized,
                                   block 32 along the embedding, symmetric): the alternative for tables
  int8                             the demo bundle's own int8 graphs (rowwise-u8u8), for comparison

Accuracy: each against fp32 on tests/fixtures/demo_ckpt/heldout.txt (512 characters, the demo
manifest's calibration), exact and stream mode, as measure/report.py (top-1 agreement, perplexity
change; gates 95 % / +5 %). ``--emulate-cpu MODEL`` re-runs some variants under
``qemu-x86_64 -cpu MODEL`` (EPYC-Rome: AVX2, no AVX-512, no VNNI) so onnxruntime picks that CPU's
kernels, and reports how far its logits are from the host's.
Speed (``--full-size BUNDLE``, default /tmp/mof-headline/t6_beta_dense.mof if present): the bundle's
step.onnx and chunk.onnx quantized with each block size (symmetric, both accuracy levels; the
asymmetric b32 too), against its fp32 and int8 graphs: one-token step latency and one 113-token
chunk pass at batch 1, medians of interleaved rounds in this one process (the VM's speed drifts:
compare ratios to fp32 / int8 of the same run).
Also: a cross-check of mof.quant.int4 against onnxruntime's MatMulNBitsQuantizer (only when onnx-ir,
which that module imports and mof does not depend on, is importable), row coupling (``--add-rows``), and
which weight group costs the most accuracy (``--sensitivity``).
Writes DIR/results.json, and with --out the .json and .md result files.
"""

from __future__ import annotations

import argparse
import json
import logging
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
DEMO = ROOT / "runtime" / "demo" / "t6-demo.mof"
HELDOUT = ROOT / "tests" / "fixtures" / "demo_ckpt" / "heldout.txt"
FULL = Path("/tmp/mof-headline/t6_beta_dense.mof")
GRAPHS = ("step", "chunk")
BLOCKS = (32, 64, 128)
LEVELS = (0, 4)
CHUNK_TOKENS = 113


def variant_name(block: int, level: int, symmetric: bool) -> str:
    return f"b{block}-l{level}-{'sym' if symmetric else 'asym'}"


def parse_variant(name: str) -> dict:
    b, lv, sym = name.split("-")[:3]
    return {"block_size": int(b[1:]), "accuracy_level": int(lv[1:]), "symmetric": sym == "sym",
            "int4_tables": name.endswith("-gq4")}


DEMO_VARIANTS = [variant_name(b, lv, s) for s in (True, False) for b in BLOCKS for lv in LEVELS] + ["b32-l4-sym-gq4"]


# Quantization ------------------------------------------------------------------------------------
def gather_int4(model, block: int = 32) -> None:
    """Gather tables [V, E] -> com.microsoft.GatherBlockQuantized, symmetric int4 blocks along E
    (as onnxruntime's MatMulNBitsQuantizer quantizes Gather: scale = signed absmax / -8)."""
    from onnx import TensorProto, helper, numpy_helper
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes, done = [], {}
    for node in g.node:
        t = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if t is None or t.data_type != TensorProto.FLOAT or len(t.dims) != 2:
            nodes.append(node)
            continue
        if t.name not in done:
            w = numpy_helper.to_array(t)                                     # [V, E]
            V, E = w.shape
            pad = (-E) % block
            wb = np.pad(w, ((0, 0), (0, pad))).reshape(V, -1, block)         # [V, E/b, b]
            mx, mn = wb.max(-1, keepdims=True), wb.min(-1, keepdims=True)
            absmax = np.where(np.abs(mx) > np.abs(mn), mx, mn)
            scale = (absmax / -8.0).astype(np.float32)
            q = np.where(scale == 0, 0, wb / np.where(scale == 0, 1, scale)).round().clip(-8, 7).astype(np.int8)
            q = q.reshape(V, -1)[:, :E].reshape(-1)
            if len(q) % 2:
                q = np.append(q, 0)
            packed = ((q[::2] & 0xF) | ((q[1::2] & 0xF) << 4)).astype(np.uint8)
            qt = helper.make_tensor(t.name + "_Q4", TensorProto.INT4, [V, E], packed.tobytes(), True)
            st = numpy_helper.from_array(scale.reshape(V, -1), t.name + "_scales")
            g.initializer.extend([qt, st])
            done[t.name] = [qt.name, st.name]
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        nodes.append(helper.make_node("GatherBlockQuantized", [done[t.name][0], node.input[1], done[t.name][1]],
                                      list(node.output), domain="com.microsoft", gather_axis=axis,
                                      quantize_axis=1, block_size=block))
    del g.node[:]
    g.node.extend(nodes)
    keep = [t for t in g.initializer if t.name not in done]
    del g.initializer[:]
    g.initializer.extend(keep)


def quantize(model, name: str):
    import onnx
    from mof.quant.gru_rewrite import gru_to_matmuls
    from mof.quant.int4 import quantize_matmuls_nbits, quantize_model_int4
    v = parse_variant(name)
    if not v["int4_tables"]:
        return quantize_model_int4(model, v["block_size"], v["accuracy_level"], v["symmetric"])
    model, _ = gru_to_matmuls(model)
    model = onnx.shape_inference.infer_shapes(model)
    quantize_matmuls_nbits(model, v["block_size"], v["accuracy_level"], v["symmetric"])
    gather_int4(model)
    return model


def with_level(model, level: int):
    """A copy of an int4 ModelProto with every MatMulNBits' accuracy_level set to ``level``."""
    from onnx import helper

    from mof.writer.onnx_walk import all_graphs
    m = type(model)()
    m.CopyFrom(model)
    for graph in all_graphs(m.graph):
        for n in graph.node:
            if n.op_type == "MatMulNBits":
                keep = [a for a in n.attribute if a.name != "accuracy_level"]
                del n.attribute[:]
                n.attribute.extend(keep)
                if level:
                    n.attribute.append(helper.make_attribute("accuracy_level", level))
    return m


def build_demo(work: Path, variants) -> dict:
    import onnx
    files = {"fp32": {g: DEMO / f"{g}.onnx" for g in GRAPHS}, "int8": {g: DEMO / f"{g}.int8.onnx" for g in GRAPHS}}
    for name in variants:
        files[name] = {}
        for g in GRAPHS:
            out = work / f"demo.{g}.{name}.onnx"
            if not out.exists():
                onnx.save(quantize(onnx.load(str(DEMO / f"{g}.onnx")), name), str(out))
            files[name][g] = out
    return files


def build_full(work: Path, bundle: Path) -> dict:
    """{variant: {graph: file}} for the full-size bundle: blocks x levels symmetric, b32 asymmetric."""
    import onnx
    files = {"fp32": {g: bundle / f"{g}.onnx" for g in GRAPHS}, "int8": {g: bundle / f"{g}.int8.onnx" for g in GRAPHS}}
    packs = [(b, True) for b in BLOCKS] + [(32, False)]
    for g in GRAPHS:
        for b, sym in packs:
            names = {lv: variant_name(b, lv, sym) for lv in LEVELS}
            outs = {lv: work / f"full.{g}.{n}.onnx" for lv, n in names.items()}
            if not all(o.exists() for o in outs.values()):
                t0 = time.time()
                q = quantize(onnx.load(str(bundle / f"{g}.onnx")), names[4])
                for lv, o in outs.items():
                    onnx.save(with_level(q, lv), str(o))
                del q
                print(f"  full-size {g} block {b} {'sym' if sym else 'asym'}: {time.time() - t0:.0f} s",
                      file=sys.stderr)
            for lv, n in names.items():
                files.setdefault(n, {})[g] = outs[lv]
    return files


# Accuracy ---------------------------------------------------------------------------------------
def demo_model(files: dict, precision: str):
    import onnxruntime as ort
    from mof.runtime.model import Model, session_options
    from mof.runtime.vocab import Vocabulary
    manifest = json.loads((DEMO / "manifest.json").read_text(encoding="utf-8"))
    so = session_options(None)
    sessions = {g: ort.InferenceSession(f if isinstance(f, bytes) else str(f), sess_options=so,
                                        providers=["CPUExecutionProvider"])
                for g, f in files.items()}
    return Model(DEMO, manifest, sessions, Vocabulary.from_json_file(DEMO / "vocab.json"), precision)


def logits_both_modes(model, text: str, tokens: int) -> dict:
    from mof.measure.accuracy import exact_logits, stream_logits
    ids = np.asarray(model.vocab.encode(text[: tokens + 1]), np.int32)
    return {"exact": exact_logits(model, ids[:-1]), "stream": stream_logits(model, ids[:-1]), "ids": ids[:-1],
            "targets": ids[1:]}


def accuracy(ref: dict, got: dict) -> dict:
    """measure/report.py's figures and measure/gates.py's verdict for ``got`` against ``ref`` (both from logits_both_modes)."""
    from mof.measure.accuracy import compare, perplexity
    from mof.measure.gates import quant_passes
    out = {}
    for mode in ("exact", "stream"):
        r = compare(ref[mode], got[mode])
        pa, pb = perplexity(ref[mode], ref["targets"]), perplexity(got[mode], ref["targets"])
        r.update(fp32_perplexity=pa, perplexity=pb, perplexity_change=pb / pa - 1)
        r["passed"] = quant_passes(r["top1_agreement"], r["perplexity_change"])
        out[mode] = r
    return out


def emulated(work: Path, cpu: str, variants, tokens: int) -> dict:
    """This script's --measure VARIANT under qemu-x86_64 -cpu CPU (two at a time; outputs in files),
    on the first ``tokens`` characters (emulation is slow: MatMulNBits' int8 path ~100x)."""
    qemu = shutil.which("qemu-x86_64")
    if not qemu:
        raise SystemExit("--emulate-cpu needs qemu-x86_64 (Debian package qemu-user)")
    out, procs, pending, t0 = {}, {}, list(variants), time.time()
    while pending or procs:
        while pending and len(procs) < 2:
            name = pending.pop(0)
            log = open(work / f"emulated.{name}.out", "w+")
            procs[name] = (subprocess.Popen([qemu, "-cpu", cpu, sys.executable, __file__, "--workdir", str(work),
                                             "--tokens", str(tokens), "--measure", name],
                                            stdout=log, stderr=subprocess.STDOUT, text=True), log)
        time.sleep(2)
        for name, (proc, log) in list(procs.items()):
            if proc.poll() is None:
                continue
            del procs[name]
            log.seek(0)
            text = log.read()
            if proc.returncode:
                raise SystemExit(f"emulated run of {name} failed: {text[-2000:]}")
            out[name] = json.loads(text.strip().splitlines()[-1])
            print(f"  {name} under qemu -cpu {cpu}: {time.time() - t0:.0f} s", file=sys.stderr)
    return out


# Speed ------------------------------------------------------------------------------------------
def feeds_for(sess, tokens: int) -> dict:
    feeds = {}
    rng = np.random.default_rng(0)
    for i in sess.get_inputs():
        if i.name == "input_ids":
            feeds[i.name] = ((np.arange(tokens, dtype=np.int32)[None] * 7 + 5) % 1000).astype(np.int32)
        elif i.name == "position":
            feeds[i.name] = np.array([10], np.int64)
        else:
            shape = [1 if not isinstance(d, int) else d for d in i.shape]
            feeds[i.name] = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    return feeds


def time_interleaved(files: dict, rounds: int, step_calls: int, chunk_calls: int) -> dict:
    """{variant: {"step_ms": median, "chunk113_ms": median}}: every variant's sessions open at once,
    one round = each variant in turn, ``step_calls`` one-token steps then ``chunk_calls`` chunk passes."""
    import onnxruntime as ort
    from mof.runtime.model import session_options
    so = session_options(None)
    sess = {n: {g: ort.InferenceSession(str(f[g]), sess_options=so, providers=["CPUExecutionProvider"])
                for g in GRAPHS} for n, f in files.items()}
    feeds = {n: {"step": feeds_for(s["step"], 1), "chunk": feeds_for(s["chunk"], CHUNK_TOKENS)}
             for n, s in sess.items()}
    for n, s in sess.items():                          # warm-up
        for _ in range(5):
            s["step"].run(None, feeds[n]["step"])
        s["chunk"].run(None, feeds[n]["chunk"])
    times = {n: {"step": [], "chunk": []} for n in sess}
    for r in range(rounds):
        order = list(sess) if r % 2 == 0 else list(reversed(list(sess)))
        for n in order:
            for g, calls in (("step", step_calls), ("chunk", chunk_calls)):
                t0 = time.perf_counter()
                for _ in range(calls):
                    sess[n][g].run(None, feeds[n][g])
                times[n][g].append((time.perf_counter() - t0) / calls * 1e3)
        print(f"  speed round {r + 1}/{rounds}", file=sys.stderr)
    return {n: {"step_ms": float(np.median(t["step"])), "chunk113_ms": float(np.median(t["chunk"]))}
            for n, t in times.items()}


# Report -----------------------------------------------------------------------------------------
def machine() -> dict:
    import onnxruntime
    from mof.measure.machine import cpu_features
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        pass
    return {"lscpu_model_name": model, "cpu": cpu_features(), "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# int4 (MatMulNBits) block size, accuracy level, symmetry ({res['date']})", "",
             f"`python benchmarks/int4_blocks.py {res.get('argv', '')}`", "",
             f"**Machine:** `lscpu` model name \"{m['lscpu_model_name']}\", {m['cpu'].get('machine')}, flags "
             f"{' '.join(m['cpu'].get('flags') or [])}; onnxruntime {m['onnxruntime']}, Python {m['python']}.", "",
             f"## Accuracy on the demo (against fp32, {res['tokens']} characters of heldout.txt; "
             "gates top-1 >= 95 %, perplexity change <= +5 %)", "",
             "| variant | exact top-1 | exact ppl change | exact mean KL | stream top-1 | stream ppl change "
             "| stream mean KL | gates | step+chunk bytes |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["demo"].items():
        if name == "fp32":
            continue
        a = r["accuracy"]
        ok = "pass" if a["exact"]["passed"] and a["stream"]["passed"] else "FAIL"
        lines.append(f"| {name} | {a['exact']['top1_agreement']:.1%} | {a['exact']['perplexity_change']:+.2%} | "
                     f"{a['exact']['mean_kl']:.2e} | {a['stream']['top1_agreement']:.1%} | "
                     f"{a['stream']['perplexity_change']:+.2%} | {a['stream']['mean_kl']:.2e} | {ok} | "
                     f"{r['bytes']:,} |")
    lines.append(f"| fp32 | | | | | | | | {res['demo']['fp32']['bytes']:,} |")
    emu = res.get("emulated")
    if emu:
        lines += ["", f"## CPU dependence: the same graphs under `qemu-x86_64 -cpu {emu['cpu']}` "
                  f"(AVX2 only, no AVX-512, no VNNI), first {emu.get('tokens')} characters", "",
                  "| variant | max abs Δlogit vs host, exact / stream | emulated exact top-1 vs host fp32 "
                  "| emulated stream top-1 vs host fp32 |", "|---|---|---|---|"]
        for name, r in emu["variants"].items():
            d = r["max_abs_diff_vs_host"]
            lines.append(f"| {name} | {d['exact']:.3g} / {d['stream']:.3g} | "
                         f"{r['accuracy']['exact']['top1_agreement']:.1%} | "
                         f"{r['accuracy']['stream']['top1_agreement']:.1%} |")
    rows = res.get("rows")
    if rows:
        lines += ["", "Rows of a batch: max |Δlogit| between rows run alone and together (measure/rows.py; "
                  "exact mode, step chunk 1, step chunk 4): " + "; ".join(
                      f"{n} {r['exact']:.2g} / {r['step_chunk1']:.2g} / {r['step_chunk4']:.2g}" for n, r in rows.items())]
    sens = res.get("sensitivity")
    if sens:
        lines += ["", f"## Which weights cost the accuracy: {sens['variant']} with one group of MatMul weights "
                  "left fp32 (exact mode)", "", "| kept fp32 | top-1 | ppl change | mean KL |", "|---|---|---|---|"]
        for g, r in sens["groups"].items():
            lines.append(f"| {g} | {r['top1_agreement']:.1%} | {r['perplexity_change']:+.2%} | {r['mean_kl']:.2e} |")
    full = res.get("full")
    if full:
        f32 = full["speed"]["fp32"]
        i8 = full["speed"]["int8"]
        lines += ["", f"## Speed at full size ({full['bundle']}, batch 1, medians of {full['rounds']} "
                  "interleaved rounds, onnxruntime's default threads)", "",
                  "| variant | step ms (1 token) | × fp32 | × int8 | chunk ms (113 tokens) | × fp32 | × int8 "
                  "| step graph bytes |", "|---|---|---|---|---|---|---|---|"]
        for name, s in full["speed"].items():
            lines.append(f"| {name} | {s['step_ms']:.2f} | {s['step_ms'] / f32['step_ms']:.2f} | "
                         f"{s['step_ms'] / i8['step_ms']:.2f} | {s['chunk113_ms']:.1f} | "
                         f"{s['chunk113_ms'] / f32['chunk113_ms']:.2f} | {s['chunk113_ms'] / i8['chunk113_ms']:.2f} | "
                         f"{full['bytes_step'][name]:,} |")
    if res.get("cross_check"):
        lines += ["", "MatMulNBitsQuantizer cross-check: " + res["cross_check"]]
    return "\n".join(lines) + "\n"


SENSITIVITY_GROUPS = {              # weight-name fragments of the demo's MatMul weights (after the GRU rewrite,
    # whose weights are named after the GRU node's index in the chunk graph)
    "nothing": [], "router Dense": ["/router/dense/"], "router GRU": ["gru21/"], "embedding GRU": ["gru7/"],
    "RNN-expert GRU": ["gru32/"], "output head": ["/lm_head/"], "transformer layer 0": ["/layers.0/"],
    "transformer layer 1": ["/layers.1/"], "emb_dense + trans_out": ["/embed/dense/", "/transformer/out/"],
}


def sensitivity(name: str, text: str, tokens: int, ref: dict) -> dict:
    """Exact-mode agreement of ``name`` with one group of MatMul weights left fp32 (tables int8)."""
    import onnx
    from onnx import TensorProto
    from mof.measure.accuracy import compare, exact_logits, perplexity
    from mof.quant.gru_rewrite import gru_to_matmuls
    from mof.quant.int4 import quantize_matmuls_nbits
    from mof.quant.rowwise import quantize_rowwise
    v = parse_variant(name)
    out = {}
    for group, fragments in SENSITIVITY_GROUPS.items():
        m, _ = gru_to_matmuls(onnx.load(str(DEMO / "chunk.onnx")))
        kept = {t.name for t in m.graph.initializer if any(f in t.name for f in fragments)
                and t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
        for t in m.graph.initializer:              # hidden from the int4 pass as double, restored after
            if t.name in kept:
                t.data_type = TensorProto.DOUBLE
        quantize_matmuls_nbits(m, v["block_size"], v["accuracy_level"], v["symmetric"])
        for t in m.graph.initializer:
            if t.name in kept:
                t.data_type = TensorProto.FLOAT
        m = quantize_rowwise(m, matmuls=False)
        got = exact_logits(demo_model({"chunk": m.SerializeToString()}, name), ref["ids"])
        r = compare(ref["exact"], got)
        r["perplexity_change"] = perplexity(got, ref["targets"]) / perplexity(ref["exact"], ref["targets"]) - 1
        out[group] = {k: r[k] for k in ("top1_agreement", "perplexity_change", "mean_kl")}
        print(f"  sensitivity, {group} kept fp32: {r['top1_agreement']:.1%}", file=sys.stderr)
    return out


def cross_check(work: Path) -> str:
    """mof.quant.int4's MatMul weights against onnxruntime's MatMulNBitsQuantizer (needs onnx-ir)."""
    try:
        from onnxruntime.quantization import QuantFormat
        from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                      MatMulNBitsQuantizer)
    except ImportError as e:
        return f"not run ({e})"
    import onnx
    import onnxruntime as ort
    from mof.quant.gru_rewrite import gru_to_matmuls
    from mof.quant.int4 import quantize_matmuls_nbits
    logging.getLogger().setLevel(logging.ERROR)
    worst, nodes = 0.0, set()
    ids = np.random.default_rng(0).integers(0, 3501, (2, 40)).astype(np.int32)
    for sym in (True, False):
        for block in BLOCKS:
            a, _ = gru_to_matmuls(onnx.load(str(DEMO / "chunk.onnx")))
            b, _ = gru_to_matmuls(onnx.load(str(DEMO / "chunk.onnx")))
            cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=sym, accuracy_level=4,
                                               quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul",))
            q = MatMulNBitsQuantizer(a, algo_config=cfg)
            q.process()
            quantize_matmuls_nbits(b, block, 4, sym)
            ra = ort.InferenceSession(q.model.model.SerializeToString()).run(None, {"input_ids": ids})
            rb = ort.InferenceSession(b.SerializeToString()).run(None, {"input_ids": ids})
            worst = max(worst, max(float(np.abs(x - y).max()) for x, y in zip(ra, rb)))
            nodes.add((count_ops(q.model.model, "MatMulNBits"), count_ops(b, "MatMulNBits")))
    return (f"on the demo's chunk graph (blocks {BLOCKS}, symmetric and not, 2 x 40 tokens), the quantizer "
            f"(which reaches the Loop bodies too) and mof.quant.int4 make (quantizer, mof) MatMulNBits nodes "
            f"{sorted(nodes)}; max |Δ| of every output {worst:.3g}")


def count_ops(model, op: str) -> int:
    from mof.writer.onnx_walk import all_graphs
    return sum(x.op_type == op for g in all_graphs(model.graph) for x in g.node)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mof-int4-blocks")
    p.add_argument("--full-size", type=Path, default=FULL if FULL.exists() else None,
                   help="bundle with step.onnx, chunk.onnx and their int8 graphs (default: %(default)s)")
    p.add_argument("--no-full-size", action="store_true", help="skip the full-size speed measurement")
    p.add_argument("--tokens", type=int, default=512, help="characters of heldout.txt measured (default 512)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--emulate-cpu", metavar="QEMU_CPU", help="also run some variants under qemu-x86_64 -cpu")
    p.add_argument("--emulate-variants", default="fp32,int8,b32-l0-sym,b32-l4-sym,b32-l4-asym")
    p.add_argument("--emulate-tokens", type=int, default=128, help="characters measured under emulation")
    p.add_argument("--sensitivity", default="b32-l0-sym",
                   help="variant whose weight groups are kept fp32 one at a time ('' to skip)")
    p.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    p.add_argument("--add-rows", metavar="VARIANTS",
                   help="only add row coupling (measure/rows.py) of these demo variants to OUT.json / OUT.md")
    p.add_argument("--measure", metavar="VARIANT", help=argparse.SUPPRESS)
    args = p.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    text = HELDOUT.read_text(encoding="utf-8")

    if args.measure:                           # child (maybe emulated): logits of one variant vs the host's
        files = build_demo(work, [])
        files.update({n: {g: work / f"demo.{g}.{n}.onnx" for g in GRAPHS} for n in [args.measure]
                      if n not in files})
        got = logits_both_modes(demo_model(files[args.measure], args.measure), text, args.tokens)
        n = args.tokens                        # the host's logits may cover more characters: their first n rows
        ref = {k: v[:n] for k, v in np.load(work / "logits.fp32.npz").items()}
        host = {k: v[:n] for k, v in np.load(work / f"logits.{args.measure}.npz").items()}
        print(json.dumps({"accuracy": accuracy(ref, got),
                          "max_abs_diff_vs_host": {k: float(np.abs(host[k] - got[k]).max()) for k in ("exact", "stream")}}))
        return 0

    if args.add_rows:                          # row coupling of already-built demo variants, added to --out
        from mof.measure.rows import row_coupling
        res = json.loads(args.out.with_suffix(".json").read_text())
        files = build_demo(work, [])
        for name in args.add_rows.split(","):
            f = files.get(name) or {g: work / f"demo.{g}.{name}.onnx" for g in GRAPHS}
            m = demo_model(f, name)
            res.setdefault("rows", {})[name] = row_coupling(m, m.vocab.encode(text))
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
        args.out.with_suffix(".md").write_text(markdown(res))
        print(markdown(res))
        return 0

    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "argv": " ".join(sys.argv[1:]),
           "machine": machine(), "tokens": args.tokens, "demo": {}}
    files = build_demo(work, DEMO_VARIANTS)
    ref = None
    for name in ["fp32", "int8"] + DEMO_VARIANTS:
        got = logits_both_modes(demo_model(files[name], name), text, args.tokens)
        np.savez(work / f"logits.{name}.npz", **got)
        if name == "fp32":
            ref = got
        r = {"bytes": sum(Path(files[name][g]).stat().st_size for g in GRAPHS),
             "bytes_step": Path(files[name]["step"]).stat().st_size}
        if name != "fp32":
            r["accuracy"] = accuracy(ref, got)
            a = r["accuracy"]
            print(f"  {name}: exact {a['exact']['top1_agreement']:.1%} {a['exact']['perplexity_change']:+.2%}, "
                  f"stream {a['stream']['top1_agreement']:.1%} {a['stream']['perplexity_change']:+.2%}", file=sys.stderr)
        res["demo"][name] = r
    res["cross_check"] = cross_check(work)
    if args.sensitivity:
        res["sensitivity"] = {"variant": args.sensitivity,
                              "groups": sensitivity(args.sensitivity, text, args.tokens, ref)}
    if args.emulate_cpu:
        res["emulated"] = {"cpu": args.emulate_cpu,
                           "tokens": args.emulate_tokens,
                           "variants": emulated(work, args.emulate_cpu, args.emulate_variants.split(","),
                                                args.emulate_tokens)}
    if args.full_size and not args.no_full_size:
        ffiles = build_full(work, args.full_size)
        res["full"] = {"bundle": args.full_size.name, "rounds": args.rounds,
                       "bytes_step": {n: Path(f["step"]).stat().st_size for n, f in ffiles.items()},
                       "speed": time_interleaved(ffiles, args.rounds, step_calls=20, chunk_calls=2)}
    (work / "results.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
        args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
