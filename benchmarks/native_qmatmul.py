"""mof.native::RowwiseQMatMul against the stock rowwise int8 subgraph it replaces, one product at a time.

    python benchmarks/native_qmatmul.py [--rounds 40] [--threads 2] [--no-spin] [--out FILE.md] [--bundle DIR]

For each shape (x [M, K] . W [K, N]: a step's [1 x 1024].[1024 x 1024], a 113-token window's
[113 x 1024].[1024 x 1024] and its [113 x 1024].[1024 x 4200]) three onnxruntime sessions, made as
mof makes them (all graph optimizations, --threads intra-op threads):
  stock     quant/rowwise.py's subgraph: Abs, ReduceMax, Mul, Div, QuantizeLinear,
            MatMulIntegerToFloat, Mul (7 ops)
  product   the MatMulIntegerToFloat alone, on x already quantized (what MLAS's product costs
            without the ops around it: the floor the stock graph could reach by fusion alone)
  native    mof.native::RowwiseQMatMul, the 7 ops as one (bit for bit the stock output: tests/native)
With --bundle (a mof bundle with int8 graphs, e.g. a full-size t6_beta_dense one), also the bundle's
int8 chunk graph (an exact window pass of `window` tokens, batch 1) and step graph (one token) as
shipped and with every dynamic product fused (mof.quant.native.fuse_rowwise, the rewrite
mof-quantize --native makes): their outputs compared bit for bit, and their times interleaved likewise.
The variants run interleaved (round after round, each round a batch of runs of each, in turn), so
a drift of this shared VM's speed hits them alike; the table gives the median over rounds of each
one's mean time per run and of the per-round ratios stock / native and product / native. Ratios,
not absolute times, are the result: name the CPU with them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "native"))
from qmatmul_graphs import IR_VERSION, OPSET, graphs  # noqa: E402
from mof.quant.native import fuse_rowwise, probe_feeds  # noqa: E402
from mof.runtime.bundle import verify_bundle  # noqa: E402
from run_cases import session  # noqa: E402

SHAPES = ((1, 1024, 1024), (113, 1024, 1024), (113, 1024, 4200))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                flags = Path("/proc/cpuinfo").read_text()
                isa = "AMX" if "amx_int8" in flags else "AVX-512 VNNI" if "avx512_vnni" in flags else \
                    "AVX2" if "avx2" in flags else "no AVX2"
                return f"{name} ({isa})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def product_only(stock: bytes) -> bytes:
    """The stock graph's MatMulIntegerToFloat alone: x_u8 [M, K] uint8 in, its float output out."""
    import onnx
    from onnx import TensorProto, helper
    m = onnx.load_from_string(stock)
    node = next(n for n in m.graph.node if n.op_type == "MatMulIntegerToFloat")
    used = set(node.input)
    inits = [t for t in m.graph.initializer if t.name in used]
    K = m.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
    g = helper.make_graph([helper.make_node(node.op_type, ["x_u8", *node.input[1:]], ["y"], domain=node.domain)],
                          "product", [helper.make_tensor_value_info("x_u8", TensorProto.UINT8, ["M", K])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=list(m.opset_import), ir_version=IR_VERSION).SerializeToString()


def time_batch(run, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        run()
    return (time.perf_counter() - t0) / reps


def measure(shape, library: str, threads: int, rounds: int, rng, spin: bool) -> dict:
    M, K, N = shape
    w = rng.normal(size=(K, N)).astype(np.float32)
    stock, native = graphs(w, None)
    x = rng.normal(size=(M, K)).astype(np.float32)
    xu8 = rng.integers(1, 256, size=(M, K), dtype=np.uint8)
    runs = {
        "stock": (lambda s: lambda: s.run(None, {"x": x}))(session(stock, None, threads, spin)),
        "product": (lambda s: lambda: s.run(None, {"x_u8": xu8}))(session(product_only(stock), None, threads, spin)),
        "native": (lambda s: lambda: s.run(None, {"x": x}))(session(native, library, threads, spin)),
    }
    for run in runs.values():                     # warm up: first runs allocate and pack
        time_batch(run, 5)
    reps = max(3, int(0.02 / max(time_batch(runs["stock"], 3), 1e-6)))   # ~20 ms per batch
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            times[k].append(time_batch(run, reps))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
    return {"shape": f"[{M} x {K}].[{K} x {N}]", "reps_per_round": reps, "rounds": rounds,
            "us": {k: round(v * 1e6, 1) for k, v in med.items()},
            "stock_over_native": round(ratio("stock", "native"), 3),
            "product_over_native": round(ratio("product", "native"), 3),
            "stock_over_product": round(ratio("stock", "product"), 3)}


def measure_bundle(bundle: Path, library: str, threads: int, rounds: int, rng, spin: bool) -> list[dict]:
    """The bundle's int8 chunk pass and step, stock and fused: bit equality, interleaved times."""
    import onnx
    config = verify_bundle(bundle).config
    window = config.window
    rows = []
    for graph, sizes in (("chunk", {"batch": 1, "seq": window, "chunk": window}),
                         ("step", {"batch": 1, "seq": 1, "chunk": 1})):
        model = onnx.load(str(bundle / f"{graph}.int8.onnx"))
        stock_bytes = model.SerializeToString()
        fused = fuse_rowwise(model)
        stock = session(stock_bytes, None, threads, spin)
        native = session(model.SerializeToString(), library, threads, spin)
        feed = probe_feeds(stock, config, sizes, rng, False)
        a, b = stock.run(None, feed), native.run(None, feed)
        equal = all(np.array_equal(x.view(np.uint8), y.view(np.uint8)) for x, y in zip(a, b))
        diff = max(float(np.max(np.abs(x.astype(np.float64) - y), initial=0.0)) for x, y in zip(a, b))
        runs = {"stock": lambda: stock.run(None, feed), "native": lambda: native.run(None, feed)}
        reps = max(1, int(0.1 / max(time_batch(runs["stock"], 2), 1e-6)))
        times = {k: [] for k in runs}
        for _ in range(rounds):
            for k, run in runs.items():
                times[k].append(time_batch(run, reps))
        rows.append({"graph": f"{graph} ({'window pass, ' + str(window) + ' tokens' if graph == 'chunk' else 'one token'})",
                     "fused": fused, "bit_equal": equal, "max_abs": diff,
                     "ms": {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()},
                     "stock_over_native": round(statistics.median(x / y for x, y in zip(times["stock"], times["native"])), 3)})
    return rows


def table(rows, cpu: str, threads: int, kernels: str, ort_version: str) -> str:
    out = [f"RowwiseQMatMul (mof.native, {kernels} kernels) vs the stock rowwise subgraph; {cpu}, "
           f"onnxruntime {ort_version}, {threads} intra-op threads, medians over interleaved rounds "
           "(a shared VM: other jobs ran beside it, so times are noisy; the ratios are the result)", "",
           "| product | stock µs | MatMulIntegerToFloat alone µs | native µs | stock / native | "
           "product alone / native | stock / product alone |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        u = r["us"]
        out.append(f"| {r['shape']} | {u['stock']} | {u['product']} | {u['native']} | {r['stock_over_native']} | "
                   f"{r['product_over_native']} | {r['stock_over_product']} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40, help="interleaved rounds (default 40)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    ap.add_argument("--no-spin", action="store_true",
                    help="intra-op threads sleep between runs (session.intra_op.allow_spinning=0): with "
                         "--threads > 1, the interleaved sessions' idle pools otherwise spin against each other")
    ap.add_argument("--bundle", type=Path, help="also a bundle's int8 window pass and step, stock vs fused")
    ap.add_argument("--out", type=Path, help="also write the table here (and the numbers beside it, .json)")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from mof.runtime.native import build
    native = build()
    if native.path is None:
        print(f"native_qmatmul: {native.note}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    rows = []
    for shape in SHAPES:
        rows.append(measure(shape, str(native.path), args.threads, args.rounds, rng, not args.no_spin))
        print(json.dumps(rows[-1]), file=sys.stderr)
    text = table(rows, cpu_name(), args.threads, native.isa, ort.__version__)
    if args.no_spin:
        text = text.replace("intra-op threads,", "intra-op threads (not spinning),", 1)
    passes = []
    if args.bundle:
        if not (args.bundle / "chunk.int8.onnx").is_file():
            print(f"native_qmatmul: error: {args.bundle} has no chunk.int8.onnx", file=sys.stderr)
            return 1
        passes = measure_bundle(args.bundle, str(native.path), args.threads, max(5, args.rounds // 4), rng,
                                not args.no_spin)
        text += (f"\n{args.bundle.name}, int8, every dynamic product fused (the GRUs' fixed-scale ones stay), "
                 f"{max(5, args.rounds // 4)} interleaved rounds\n\n| graph | products fused | outputs bit-equal | max abs diff | "
                 "stock ms | native ms | stock / native |\n|---|---:|---|---:|---:|---:|---:|\n")
        for p in passes:
            text += (f"| {p['graph']} | {p['fused']} | {'yes' if p['bit_equal'] else 'NO'} | {p['max_abs']:g} | "
                     f"{p['ms']['stock']} | {p['ms']['native']} | {p['stock_over_native']} |\n")
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"cpu": cpu_name(), "onnxruntime": ort.__version__, "threads": args.threads, "spinning": not args.no_spin, "kernels": native.isa,
             "opset": OPSET, "rows": rows, "bundle": str(args.bundle or ""), "passes": passes}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
