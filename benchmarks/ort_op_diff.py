"""Which op's kernel makes a graph's outputs differ between onnxruntime versions.

    python benchmarks/ort_op_diff.py BUNDLE [--precision int8] [--graph chunk]
                                     [--versions 1.28.0,1.29.0,1.30.0,1.32.0] [--lengths 1,128]
                                     [--matmul-rows 1,32,113,128,512] [--workdir DIR] [--out FILE.md]

Bisects by node, on the bundle's real shapes. In this process (which needs onnx and onnxruntime:
the export environment) the bundle's graph (default: the int8 chunk graph, the window pass) runs on
random ids (seed 0) of each --lengths (the products then have M = length rows), with the inputs of
every tested node kept; each tested top-level node becomes a one-node model (its constant inputs as
initializers, so onnxruntime pre-packs the weights as in the bundle; a Loop or If brings its body
and the outer values the body reads). For MatMulIntegerToFloat nodes --matmul-rows adds one-node
tests with the weights of the first node of each [K, N] and random uint8 rows (seed 0), M = each
value.

Then, in one environment per version (benchmarks/ort_versions.py's: numpy + onnxruntime + mof,
one at a time), every one-node model runs on the kept inputs, and the whole graph runs with the
tested nodes' outputs added as graph outputs (the "trace": where in the real graph the outputs
first part; the added outputs can keep onnxruntime from fusing across them). Sessions are made
with mof's own options (mof.runtime.model.session_options). Outputs are compared bit for bit
with the last version listed: per op type how many nodes differ and by how much, then the
differing nodes with their shapes. Tested op types: every top-level op but the data-movement ones
(SKIP).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ort_versions import environment, run_quiet  # noqa: E402  (one venv per onnxruntime version)

SKIP = {"Shape", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Concat", "Slice", "Split", "Transpose",
        "Cast", "Gather", "Range", "Constant", "ConstantOfShape", "Expand", "Where", "LessOrEqual",
        "Less", "Greater", "Equal", "Not", "And", "Or", "Flatten", "Tile"}
SEED = 0


# Building the tests (this process: onnx + onnxruntime) -------------------------------------------
def outer_names(graph) -> set[str]:
    """Names a subgraph reads that it does not define (its outer-scope values), recursively."""
    import onnx
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    used = set()
    for n in graph.node:
        used |= {x for x in n.input if x}
        for a in n.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                used |= outer_names(g)
        defined |= set(n.output)
    return used - defined


def node_reads(node) -> list[str]:
    import onnx
    names = [x for x in node.input if x]
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            names += sorted(outer_names(g) - set(names))
    return names


def tested(model, ops: set[str] | None) -> list:
    return [n for n in model.graph.node
            if (n.op_type in ops if ops else n.op_type not in SKIP)]


def one_node_model(model, node, inits: dict, values: dict):
    """A model of ``node`` alone: constant inputs as initializers, the rest graph inputs."""
    import onnx
    from onnx import helper
    reads = node_reads(node)
    inputs = [helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(values[x].dtype),
                                            list(values[x].shape)) for x in reads if x not in inits]
    outputs = [onnx.ValueInfoProto(name=o) for o in node.output if o]
    g = helper.make_graph([node], "one_node", inputs, outputs, [inits[x] for x in reads if x in inits])
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return m, [x for x in reads if x not in inits]


def load_graph(bundle: Path, graph: str, precision: str):
    import onnx
    from mof.runtime.bundle import read_manifest
    file = read_manifest(bundle).graph_file(graph, precision)
    if not file:
        raise SystemExit(f"error: {bundle} has no {precision} {graph} graph")
    return onnx.load(str(bundle / file)), file


def capture(model, ids: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Run ``model`` here with ``names`` added as outputs; {name: value}."""
    import onnx
    import onnxruntime as ort
    from mof.runtime.model import session_options
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.ValueInfoProto(name=n) for n in names if n not in have])
    sess = ort.InferenceSession(m.SerializeToString(), session_options(None), providers=["CPUExecutionProvider"])
    got = sess.run(None, {model.graph.input[0].name: ids})
    return dict(zip([o.name for o in sess.get_outputs()], got))


def build(bundle: Path, graph: str, precision: str, lengths: list[int], matmul_rows: list[int],
          ops: set[str] | None, out: Path) -> list[dict]:
    """Write the one-node tests and the traces under ``out``; returns the test list (tests.json)."""
    import onnx
    from mof.runtime.bundle import read_manifest
    model, file = load_graph(bundle, graph, precision)
    vocab = read_manifest(bundle).config.vocab_size
    inits = {i.name: i for i in model.graph.initializer}
    nodes = tested(model, ops)
    for i, n in enumerate(nodes):
        n.name = n.name or f"{n.op_type}_{i}"
    out.mkdir(parents=True, exist_ok=True)
    tests, seen_mm = [], set()
    for T in lengths:
        ids = np.random.default_rng(SEED).integers(0, vocab, size=(1, T)).astype(np.int32)
        graph_inputs = {i.name for i in model.graph.input}
        reads = sorted({x for n in nodes for x in node_reads(n) if x not in inits and x not in graph_inputs})
        produced = [o for n in nodes for o in n.output if o]
        values = capture(model, ids, sorted(set(reads) | set(produced)))
        values[model.graph.input[0].name] = ids
        trace = out / f"trace-T{T}.onnx"
        if not trace.exists():
            m = onnx.ModelProto()
            m.CopyFrom(model)
            m.graph.output.extend([onnx.ValueInfoProto(name=o) for o in produced])
            onnx.save(m, str(trace))
        np.savez(out / f"trace-T{T}.inputs.npz", **{model.graph.input[0].name: ids})
        tests.append({"name": f"trace T={T}", "kind": "trace", "op": "(graph)", "model": trace.name,
                      "inputs": f"trace-T{T}.inputs.npz", "shapes": f"ids [1, {T}]", "T": T,
                      "order": [[o, n.op_type, n.name] for n in nodes for o in n.output if o]})
        for i, n in enumerate(nodes):
            m, feeds = one_node_model(model, n, inits, values)
            name = f"T{T}-{i:04d}-{n.op_type}"
            onnx.save(m, str(out / f"{name}.onnx"))
            np.savez(out / f"{name}.npz", **{x: values[x] for x in feeds})
            tests.append({"name": n.name, "kind": "node", "op": n.op_type, "T": T, "model": f"{name}.onnx",
                          "inputs": f"{name}.npz", "shapes": shapes(n, values, inits)})
            if n.op_type == "MatMulIntegerToFloat" and n.input[1] in inits and tuple(inits[n.input[1]].dims) not in seen_mm:
                seen_mm.add(tuple(inits[n.input[1]].dims))         # one weight per [K, N]
                tests += matmul_tests(m, n, feeds, values, inits, matmul_rows, out, i)
    (out / "tests.json").write_text(json.dumps(tests, indent=1))
    return tests


def shapes(node, values: dict, inits: dict) -> str:
    from onnx import numpy_helper
    def shape(x):
        if x in values:
            return f"{values[x].dtype}{list(values[x].shape)}"
        if x in inits:
            a = numpy_helper.to_array(inits[x])
            return f"{a.dtype}{list(a.shape)} const"
        return "?"
    return ", ".join(shape(x) for x in node.input if x)


def matmul_tests(m, node, feeds, values, inits, rows, out: Path, i: int) -> list[dict]:
    """One-node MatMulIntegerToFloat tests with the node's weights and random uint8 rows, M = rows."""
    from onnx import numpy_helper
    a_name = node.input[0]
    K = numpy_helper.to_array(inits[node.input[1]]).shape[0]
    N = numpy_helper.to_array(inits[node.input[1]]).shape[1]
    tests = []
    for M in rows:
        rng = np.random.default_rng(SEED)
        name = f"mm-{i:04d}-M{M}"
        if feeds != [a_name]:                  # scales and zero points are constants in mof's graphs
            return []
        feed = {a_name: rng.integers(0, 256, size=values[a_name].shape[:-2] + (M, K)).astype(np.uint8)}
        # a one-node model's input shapes are the captured ones: rebuild with the new rows
        mm = type(m)()
        mm.CopyFrom(m)
        for vi in mm.graph.input:
            del vi.type.tensor_type.shape.dim[:]
            for d in feed[vi.name].shape:
                vi.type.tensor_type.shape.dim.add().dim_value = d
        import onnx
        onnx.save(mm, str(out / f"{name}.onnx"))
        np.savez(out / f"{name}.npz", **feed)
        tests.append({"name": f"{node.name} random u8 rows", "kind": "matmul", "op": "MatMulIntegerToFloat",
                      "T": M, "model": f"{name}.onnx", "inputs": f"{name}.npz",
                      "shapes": f"A u8{list(feed[a_name].shape)} x B s8[{K}, {N}] const"})
    return tests


# Worker: one version's environment ---------------------------------------------------------------
def worker(tests_dir: Path, dump: Path) -> None:
    import onnxruntime as ort
    from mof.runtime.model import session_options
    tests = json.loads((tests_dir / "tests.json").read_text())
    got = {}
    for k, t in enumerate(tests):
        sess = ort.InferenceSession(str(tests_dir / t["model"]), session_options(None),
                                    providers=["CPUExecutionProvider"])
        feeds = dict(np.load(tests_dir / t["inputs"]))
        for name, value in zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)):
            got[f"{k}|{name}"] = value
    got["onnxruntime"] = np.asarray(ort.__version__)
    tmp = dump.with_suffix(".tmp.npz")
    np.savez(tmp, **got)
    os.replace(tmp, dump)


# Comparison ---------------------------------------------------------------------------------------
def diff(a: np.ndarray, b: np.ndarray) -> dict:
    if a.dtype.kind not in "fc":
        ne = a != b
        return {"max": float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0,
                "share": float(ne.mean()) if a.size else 0.0, "scale": float(np.abs(a).max()) if a.size else 0.0}
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"max": float(d.max()) if d.size else 0.0, "share": float((d > 0).mean()) if d.size else 0.0,
            "scale": float(np.abs(a).max()) if a.size else 0.0}


def report(tests: list[dict], dumps: dict[str, Path], versions: list[str]) -> str:
    ref = np.load(dumps[versions[-1]])
    lines = []
    for v in versions[:-1]:
        other = np.load(dumps[v])
        per_op = defaultdict(lambda: [0, 0, 0.0])
        rows = []
        trace_rows = []
        for k, t in enumerate(tests):
            keys = [x for x in ref.files if x.startswith(f"{k}|")]
            for key in keys:
                r = diff(ref[key], other[key])
                if t["kind"] == "trace":
                    if r["max"] > 0:
                        trace_rows.append((t, key.split("|", 1)[1], r))
                    continue
                label = f"{t['op']}" + (" (random rows)" if t["kind"] == "matmul" else "")
                per_op[label][0] += 1
                if r["max"] > 0:
                    per_op[label][1] += 1
                    per_op[label][2] = max(per_op[label][2], r["max"])
                    rows.append((t, key.split("|", 1)[1], r))
        lines.append(f"\n### onnxruntime {v} vs {versions[-1]}\n")
        lines.append("| op | outputs tested | differing | max \\|Δ\\| |")
        lines.append("|---|---|---|---|")
        for op, (n, bad, mx) in sorted(per_op.items()):
            lines.append(f"| {op} | {n} | {bad} | {mx:.3g} |")
        if rows:
            lines.append("\nOne-node tests whose outputs differ (identical inputs):\n")
            lines.append("| node | op | rows M | inputs | max \\|Δ\\| | share of elements | max \\|out\\| |")
            lines.append("|---|---|---|---|---|---|---|")
            for t, out, r in rows[:60]:
                lines.append(f"| {t['name']} | {t['op']} | {t.get('T', '')} | {t['shapes']} | {r['max']:.3g} | "
                             f"{r['share']:.1%} | {r['scale']:.3g} |")
            if len(rows) > 60:
                lines.append(f"| ... {len(rows) - 60} more | | | | | | |")
        lines += trace_lines([t for t in tests if t["kind"] == "trace"], trace_rows)
    return "\n".join(lines) + "\n"


def trace_lines(traces: list[dict], rows: list) -> list[str]:
    """Per trace: how many outputs differ, the first five in graph order (with their op) and the logits."""
    out = []
    for t in traces:
        got = {name: r for tt, name, r in rows if tt is t}
        order = t["order"]
        per_op = defaultdict(lambda: [0, 0, 0.0, 0.0])
        for o, op, node in order:
            per_op[op][0] += 1
            if o in got:
                per_op[op][1] += 1
                per_op[op][2] = max(per_op[op][2], got[o]["max"])
                per_op[op][3] = max(per_op[op][3], got[o]["share"])
        first = [(o, op, node) for o, op, node in order if o in got][:5]
        line = f"\nTrace, the whole graph on ids [1, {t['T']}] (tested nodes' outputs added): "
        if not got:
            out.append(line + "every output identical.")
            continue
        logits = got.get("logits")
        out.append(line + f"{sum(o in got for o, _, _ in order)} of {len(order)} tested nodes' outputs differ"
                   + (f"; logits max |Δ| {logits['max']:.3g}" if logits else "; logits identical")
                   + ". First in graph order: " + "; ".join(f"`{node}` {op} {got[o]['max']:.3g}" for o, op, node in first)
                   + ". Per op (outputs differing / tested, max |Δ|, largest share of elements differing): "
                   + "; ".join(f"{op} {b}/{n}, {mx:.3g}, {sh:.1%}" for op, (n, b, mx, sh) in sorted(per_op.items()) if b)
                   + ".")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("bundle", type=Path, nargs="?", help="the bundle whose graph is bisected")
    ap.add_argument("--precision", default="int8", help="fp32, int8 or int4 (default: %(default)s)")
    ap.add_argument("--graph", default="chunk", help="which graph (default: %(default)s, the window pass)")
    ap.add_argument("--versions", default="1.28.0,1.29.0,1.30.0,1.32.0",
                    help="onnxruntime versions; the last is the reference; VERSION@QEMU_CPU runs that "
                         "version under qemu-x86_64 -cpu QEMU_CPU (e.g. 1.30.0@Westmere: no AVX2) "
                         "(default: %(default)s)")
    ap.add_argument("--lengths", default="1,128", help="ids per run = rows M of the products (default: %(default)s)")
    ap.add_argument("--matmul-rows", default="1,32,113,128,512",
                    help="M of the extra MatMulIntegerToFloat tests with random rows; '' for none (default: %(default)s)")
    ap.add_argument("--ops", help="comma-separated op types to test (default: all but data movement)")
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "mof-ort-versions",
                    help="environments, tests and outputs (default: %(default)s)")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.dump)
        return 0
    if not args.bundle or not (args.bundle / "manifest.json").is_file():
        print(f"error: {args.bundle} is not a mof bundle (no manifest.json)", file=sys.stderr)
        return 2
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    lengths = [int(x) for x in args.lengths.split(",") if x]
    rows = [int(x) for x in args.matmul_rows.split(",") if x]
    ops = set(args.ops.split(",")) if args.ops else None
    from ort_versions import precision_key
    key = precision_key(args.bundle.resolve(), args.precision)
    if not key:
        print(f"error: {args.bundle} has no {args.precision} graphs", file=sys.stderr)
        return 2
    tag = f"{key.replace('/', '-')}-{args.graph}-T{'_'.join(map(str, lengths))}" \
          f"-M{'_'.join(map(str, rows))}" + (f"-{'_'.join(sorted(ops))}" if ops else "")
    tests_dir = args.workdir.resolve() / "op_diff" / tag
    t0 = time.time()
    if (tests_dir / "tests.json").exists():
        tests = json.loads((tests_dir / "tests.json").read_text())
    else:
        tests = build(args.bundle.resolve(), args.graph, args.precision, lengths, rows, ops, tests_dir)
        print(f"  {len(tests)} tests built in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    dumps = {}
    for spec in versions:
        dumps[spec] = tests_dir / f"out-{spec}.npz"
        if not dumps[spec].exists():
            version, _, cpu = spec.partition("@")
            python = environment(args.workdir.resolve(), version)
            prefix = []
            if cpu:
                qemu = shutil.which("qemu-x86_64") or shutil.which("qemu-x86_64-static")
                if not qemu:
                    raise SystemExit(f"error: {spec} needs qemu-x86_64 (Debian package qemu-user)")
                prefix = [qemu, "-cpu", cpu]
            t0 = time.time()
            run_quiet(prefix + [str(python), __file__, "--worker", str(tests_dir), "--dump", str(dumps[spec])])
            print(f"  onnxruntime {spec}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    from mof.measure.machine import cpu_features
    cpu = cpu_features()
    text = (f"# {args.bundle.name}: {args.precision} {args.graph} graph, node by node across onnxruntime versions\n\n"
            f"`python benchmarks/ort_op_diff.py {args.bundle} --precision {args.precision} --graph {args.graph} "
            f"--versions {args.versions} --lengths {args.lengths} --matmul-rows {args.matmul_rows}`\n\n"
            f"Machine: {cpu['model']} ({' '.join(cpu['flags'])}). {sum(t['kind'] == 'node' for t in tests)} one-node "
            f"tests on captured inputs (ids of length {args.lengths}), "
            f"{sum(t['kind'] == 'matmul' for t in tests)} MatMulIntegerToFloat tests with random rows.\n")
    text += report(tests, dumps, versions)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
