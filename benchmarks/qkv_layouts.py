"""The q/k/v section of a transformer block laid out three ways, side by side on this machine.

    python benchmarks/qkv_layouts.py [--rounds 5] [--threads 2] [--out DIR] [--force]

A stand-in graph of 23 blocks (the full-size t6_beta_dense's count, E = 512, 8 heads), each
reading the previous one's output through a LayerNormalization, with random weights of its own:

- ``one product``: what mof-export writes — one MatMul over the concatenated q/k/v kernels
  (one activation quantization in int8), a Split into qk and v, phi = Elu + 1 on qk, a Split into q, k;
- ``q,k / v``: two products reading the same input (in int8 one quantization, shared), no first Split;
- ``q / k / v``: three products, phi on q and on k apart, no Split;
- ``one product, phi = exp(min(x, 0)) + relu(x)``: the first layout with phi written without Elu
  (the same function; not bit for bit: Elu + 1 rounds exp(x) - 1 + 1).

Each layout in fp32 and in mof's int8 (``mof.quant.rowwise``), for a window pass's 113 rows and a
step's one row; all in one process, interleaved rounds of repeated runs (a pause before each
layout's turn: onnxruntime's pool threads spin-wait after a run), medians. Every layout's output is
checked against the first's. Writes qkv_layouts.{json,md} under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

BLOCKS, E, H = 23, 512, 8
DH = E // H
ROWS = (113, 1)                         # a refill's K at W = 128, R = 16; a step
LAYOUTS = ("one product", "q,k / v", "q / k / v", "one product, phi = exp(min(x, 0)) + relu(x)")


def build(layout: str, seed: int = 0):
    """The stand-in graph: x [C, 1, E] -> the blocks' outputs concatenated [23·C, 1, H, dh]."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    inits, nodes, outs = [], [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    one, zero = const("one", np.float32(1)), const("zero", np.float32(0))
    heads, pair = const("heads", np.array([0, 0, H, DH], np.int64)), const("pair", np.array([0, 0, 2 * H, DH], np.int64))
    split_qkv, split_qk = const("s_qkv", np.array([2 * E, E], np.int64)), const("s_qk", np.array([H, H], np.int64))
    flat = const("flat", np.array([0, 0, E], np.int64))
    gamma, beta = const("gamma", np.ones(E, np.float32)), const("beta", np.zeros(E, np.float32))
    x = "x"

    def phi(p, v):
        if layout.startswith("one product, phi"):
            m = helper.make_node("Min", [v, zero], [p + "min"])
            e = helper.make_node("Exp", [p + "min"], [p + "exp"])
            r = helper.make_node("Relu", [v], [p + "relu"])
            nodes.extend([m, e, r, helper.make_node("Add", [p + "exp", p + "relu"], [p + "phi"])])
        else:
            nodes.extend([helper.make_node("Elu", [v], [p + "elu"], alpha=1.0),
                          helper.make_node("Add", [p + "elu", one], [p + "phi"])])
        return p + "phi"

    def dense(p, w, b):
        nodes.extend([helper.make_node("MatMul", [x, const(p + "w", w)], [p + "mm"]),
                      helper.make_node("Add", [p + "mm", const(p + "b", b)], [p + "y"])])
        return p + "y"

    for blk in range(BLOCKS):
        p = f"b{blk}/"
        w = [(rng.standard_normal((E, E)) * 0.05).astype(np.float32) for _ in range(3)]
        b = [(rng.standard_normal(E) * 0.05).astype(np.float32) for _ in range(3)]
        if layout.startswith("one product"):
            qkv = dense(p + "qkv", np.concatenate(w, 1), np.concatenate(b))                    # [C, 1, 3E]
            nodes.append(helper.make_node("Split", [qkv, split_qkv], [p + "qk", p + "v"], axis=-1))
            qk = phi(p + "qk_", p + "qk")
            nodes.append(helper.make_node("Reshape", [qk, pair], [p + "qk4"]))
            nodes.append(helper.make_node("Split", [p + "qk4", split_qk], [p + "q4", p + "k4"], axis=2))
            v = p + "v"
        elif layout == "q,k / v":
            qk = phi(p + "qk_", dense(p + "qk", np.concatenate(w[:2], 1), np.concatenate(b[:2])))
            v = dense(p + "v", w[2], b[2])
            nodes.append(helper.make_node("Reshape", [qk, pair], [p + "qk4"]))
            nodes.append(helper.make_node("Split", [p + "qk4", split_qk], [p + "q4", p + "k4"], axis=2))
        else:
            for i, n in enumerate("qk"):
                nodes.append(helper.make_node("Reshape", [phi(p + n + "_", dense(p + n, w[i], b[i])), heads],
                                              [p + n + "4"]))
            v = dense(p + "v", w[2], b[2])
        nodes.append(helper.make_node("Reshape", [v, heads], [p + "v4"]))
        nodes.append(helper.make_node("Sum", [p + "q4", p + "k4", p + "v4"], [p + "out"]))     # [C, 1, H, dh]
        outs.append(p + "out")
        nodes.append(helper.make_node("Reshape", [p + "out", flat], [p + "flat"]))
        nodes.append(helper.make_node("LayerNormalization", [p + "flat", gamma, beta], [p + "next"], axis=-1))
        x = p + "next"
    nodes.append(helper.make_node("Concat", outs, ["y"], axis=0))
    graph = helper.make_graph(nodes, "qkv_layouts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["C", 1, E])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(rounds: int, threads: int) -> dict:
    import onnxruntime as ort
    from mof.quant.rowwise import quantize_rowwise
    from mof.runtime.model import session_options
    sessions = {}
    for prec in ("fp32", "int8"):
        for layout in LAYOUTS:
            model = build(layout)
            if prec == "int8":
                model = quantize_rowwise(model)
            sessions[prec, layout] = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                                          providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    out = {"results": []}
    for rows in ROWS:
        x = rng.standard_normal((rows, 1, E)).astype(np.float32)
        for prec in ("fp32", "int8"):
            ref = sessions[prec, LAYOUTS[0]].run(None, {"x": x})[0]
            times = {layout: [] for layout in LAYOUTS}
            diffs = {layout: float(np.abs(sessions[prec, layout].run(None, {"x": x})[0] - ref).max())
                     for layout in LAYOUTS}
            for k in range(rounds):
                for layout in LAYOUTS[k % len(LAYOUTS):] + LAYOUTS[:k % len(LAYOUTS)]:
                    time.sleep(0.3)
                    s = sessions[prec, layout]
                    for _ in range(5 if rows > 1 else 40):
                        t0 = time.perf_counter()
                        s.run(None, {"x": x})
                        times[layout].append(time.perf_counter() - t0)
            for layout in LAYOUTS:
                ms = float(np.median(times[layout]) * 1e3)
                out["results"].append({"rows": rows, "precision": prec, "layout": layout, "ms": ms,
                                       "ms_per_block": ms / BLOCKS, "max_abs_diff_vs_first": diffs[layout]})
                print(f"{rows:4d} rows {prec}  {layout:45s} {ms:7.2f} ms  max|Δ| {diffs[layout]:.1e}", flush=True)
    return out


def render(report: dict) -> str:
    from mof.measure.machine import describe_machine
    lines = [f"# q/k/v layouts, {BLOCKS} blocks (E = {E}, {H} heads), {report['date']}", "",
             f"Machine: {describe_machine(report['machine'])}; {report['threads']} threads; "
             f"median of {report['rounds']} interleaved rounds.", "",
             "| rows | precision | layout | ms (23 blocks) | × one product | max \\|Δ\\| vs one product |",
             "|---|---|---|---|---|---|"]
    base = {(r["rows"], r["precision"]): r["ms"] for r in report["results"] if r["layout"] == LAYOUTS[0]}
    for r in report["results"]:
        lines.append(f"| {r['rows']} | {r['precision']} | {r['layout']} | {r['ms']:.2f} | "
                     f"{r['ms'] / base[r['rows'], r['precision']]:.2f} | {r['max_abs_diff_vs_first']:.1e} |")
    lines += ["", f"Reproduce: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / time.strftime("%Y-%m-%d"),
                    help="where qkv_layouts.{json,md} go (default benchmarks/results/<today>)")
    ap.add_argument("--force", action="store_true", help="replace existing results")
    args = ap.parse_args(argv)
    from mof.measure.machine import measured_on
    if not 1 <= args.rounds <= 100:
        ap.error(f"--rounds must be between 1 and 100, got {args.rounds}")
    if not 1 <= args.threads <= 256:
        ap.error(f"--threads must be between 1 and 256, got {args.threads}")
    out_json, out_md = args.out / "qkv_layouts.json", args.out / "qkv_layouts.md"
    if out_json.exists() and not args.force:
        print(f"qkv_layouts: {out_json} exists (--force replaces it)", file=sys.stderr)
        return 2
    report = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "rounds": args.rounds,
              "machine": measured_on(), **run(args.rounds, args.threads),
              "command": "python benchmarks/qkv_layouts.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2))
    out_md.write_text(render(report), encoding="utf-8")
    print(f"wrote {out_json} and {out_md.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
