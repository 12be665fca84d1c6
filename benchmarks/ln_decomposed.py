"""Would a graph without the LayerNormalization op give int8 logits that hold across onnxruntime
versions? (An experiment, not what mof exports.)

    python benchmarks/ln_decomposed.py BUNDLE [--precision int8] [--versions 1.20.1,...,1.32.0]
                                       [--workdir DIR] [--out FILE.md]

benchmarks/ort_op_diff.py found that between onnxruntime versions only LayerNormalization's kernel
changes (1.26 -> 1.27 and 1.29 -> 1.30, the AVX2 MLAS kernel), and int8's per-row quantization
amplifies its last-bit changes at full size. This script (with onnx, in this process) rewrites every
LayerNormalization of the bundle's chunk graph, subgraphs included, into ReduceMean, Sub, Mul,
ReduceMean, Add(epsilon), Sqrt, Reciprocal, Mul, Mul(scale), Add(bias), then runs the original and
the rewritten graph in each version's environment (benchmarks/ort_versions.py's) on the ids of
ort_versions.py (seed 0): exact passes of rows 0 and 1 ending at 32, 64, 96, 128 ids, with
onnxruntime's full graph optimisations. Prints, per graph and version, max |Δlogit| against the
newest version, and the rewritten graph against the original on each version.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ort_versions import LENGTH, ROWS, SEED, VERSIONS, environment, run_quiet  # noqa: E402

ENDS = (32, 64, 96, 128)


def decompose(model) -> int:
    """Rewrite every LayerNormalization (axis -1, no mean/inv-std outputs) in place; their count."""
    import onnx
    from onnx import helper, numpy_helper
    opset = {o.domain: o.version for o in model.opset_import}[""]
    count = 0

    def reduce_mean(g, x, out, axes):
        if opset >= 18:
            return helper.make_node("ReduceMean", [x, axes], [out], keepdims=1)
        return helper.make_node("ReduceMean", [x], [out], axes=[-1], keepdims=1)

    def rewrite(g):
        nonlocal count
        nodes = []
        for n in g.node:
            for a in n.attribute:
                for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    rewrite(sub)
            if n.op_type != "LayerNormalization":
                nodes.append(n)
                continue
            at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if at.get("axis", -1) != -1 or any(n.output[1:]):
                raise SystemExit(f"error: {n.name}: only axis -1 without extra outputs is rewritten")
            count += 1
            p = f"ln_decomposed{count}/"
            g.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), p + "axes"),
                                  numpy_helper.from_array(np.array(at.get("epsilon", 1e-5), np.float32), p + "eps")])
            x, scale = n.input[0], n.input[1]
            bias = n.input[2] if len(n.input) > 2 and n.input[2] else ""
            nodes += [reduce_mean(g, x, p + "mean", p + "axes"),
                      helper.make_node("Sub", [x, p + "mean"], [p + "d"]),
                      helper.make_node("Mul", [p + "d", p + "d"], [p + "d2"]),
                      reduce_mean(g, p + "d2", p + "var", p + "axes"),
                      helper.make_node("Add", [p + "var", p + "eps"], [p + "ve"]),
                      helper.make_node("Sqrt", [p + "ve"], [p + "sd"]),
                      helper.make_node("Reciprocal", [p + "sd"], [p + "inv"]),
                      helper.make_node("Mul", [p + "d", p + "inv"], [p + "norm"]),
                      helper.make_node("Mul", [p + "norm", scale], [p + "scaled"] if bias else [n.output[0]])]
            if bias:
                nodes.append(helper.make_node("Add", [p + "scaled", bias], [n.output[0]]))
        del g.node[:]
        g.node.extend(nodes)

    rewrite(model.graph)
    return count


def worker(files: list[Path], ids_path: Path, out: Path) -> None:
    import onnxruntime as ort
    from mof.runtime.model import session_options
    ids = np.load(ids_path)["ids"]
    got = {"onnxruntime": np.asarray(ort.__version__)}
    for f in files:
        sess = ort.InferenceSession(str(f), session_options(None), providers=["CPUExecutionProvider"])
        got[f.stem] = np.concatenate([sess.run(["logits"], {"input_ids": row[None, :end]})[0]
                                      for row in ids[:2] for end in ENDS])
    np.savez(out, **got)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--precision", default="int8", help="default: %(default)s")
    ap.add_argument("--versions", default=",".join(VERSIONS),
                    help="the newest without @ is the reference; VERSION@QEMU_CPU runs under qemu-x86_64 -cpu "
                         "QEMU_CPU (default: %(default)s)")
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "mof-ort-versions")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", nargs="+", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.ids, args.dump)
        return 0
    if not args.bundle or not (args.bundle / "manifest.json").is_file():
        print(f"error: {args.bundle} is not a mof bundle (no manifest.json)", file=sys.stderr)
        return 2
    import onnx
    from ort_versions import precision_key
    from mof.runtime.bundle import read_manifest
    bundle = args.bundle.resolve()
    key = precision_key(bundle, args.precision)
    file = read_manifest(bundle).graph_file("chunk", args.precision)
    if not key or not file:
        print(f"error: {bundle} has no {args.precision} chunk graph", file=sys.stderr)
        return 2
    work = args.workdir.resolve() / "ln_decomposed" / key.replace("/", "-")
    work.mkdir(parents=True, exist_ok=True)
    original, rewritten = work / "original.onnx", work / "decomposed.onnx"
    if not rewritten.exists():
        model = onnx.load(str(bundle / file))
        onnx.save(model, str(original))
        n = decompose(model)
        onnx.save(model, str(rewritten))
        print(f"  {n} LayerNormalization nodes rewritten", file=sys.stderr)
    ids = work / "ids.npz"
    if not ids.exists():
        vocab = read_manifest(bundle).config.vocab_size
        np.savez(ids, ids=np.random.default_rng(SEED).integers(0, vocab, size=(ROWS, LENGTH)).astype(np.int32))
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    for v in versions:
        if not (work / f"{v}.npz").exists():
            print(f"  onnxruntime {v}", file=sys.stderr, flush=True)
            version, _, cpu = v.partition("@")
            prefix = [shutil.which("qemu-x86_64") or shutil.which("qemu-x86_64-static") or "qemu-x86_64", "-cpu", cpu] if cpu else []
            run_quiet(prefix + [str(environment(args.workdir.resolve(), version)), __file__, "--worker", str(original),
                                str(rewritten), "--ids", str(ids), "--dump", str(work / f"{v}.npz")])
    order = sorted(versions, key=lambda v: (tuple(int(x) for x in v.split("@")[0].split(".")), "@" not in v))
    got = {v: dict(np.load(work / f"{v}.npz")) for v in order}
    ref = got[order[-1]]                       # the newest version, native (sorted last)
    lines = [f"# {bundle.name} {args.precision} chunk graph, LayerNormalization op vs decomposed, across onnxruntime\n",
             f"`python benchmarks/ln_decomposed.py {args.bundle} --precision {args.precision} --versions {args.versions}`\n",
             f"{2 * len(ENDS)} exact passes (rows 0-1 of ort_versions.py's ids, ending at {', '.join(map(str, ENDS))}).\n",
             f"| onnxruntime | LN op: max \\|Δ\\| vs {order[-1]} | decomposed: max \\|Δ\\| vs {order[-1]} | decomposed vs LN op |",
             "|---|---|---|---|"]
    for v in order:
        d = lambda g, a, b: float(np.abs(a[g].astype(np.float64) - b[g]).max())
        lines.append(f"| {v} | {d('original', got[v], ref):.2g} | {d('decomposed', got[v], ref):.2g} | "
                     f"{float(np.abs(got[v]['decomposed'].astype(np.float64) - got[v]['original']).max()):.2g} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
