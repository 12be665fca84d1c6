"""The headline comparison, reproduced from scratch in one run:

    python benchmarks/headline.py [--model-type t7_small] [--workdir DIR] [--tf-tokens 16] [--decode-tokens 128]

1. builds a full-size model of the type (default t6_beta_dense; any T6 or T7 type; V = 16000,
   random weights) with xiaothink's code and exports it with mof-export --int8
   --allow-degraded --no-full (random weights make int8's top-1 agreement meaningless, see
   README), timing the export, unless DIR already holds them; adds int4 graphs (mof-quantize
   --int4 --allow-degraded) and rewrites a format-1 bundle in format 2 (mof-quantize --upgrade);
2. runs xiaothink's own generation loop (generate_texts_untilstr_loop, window 128, TF) and
   times it per generated character;
3. runs mof-bench on the bundle (stream with the refill rule at R = 16, plain stream without
   refills, and exact; fp32, int8 and int4, fresh process each), with load and steady memory;
4. writes benchmarks/results/<date>/headline.{json,md,png} (headline-<type>.* for other types
   than t6_beta_dense): per-token latency and the ratio to the TensorFlow reference, bundle
   sizes and export time, with the machine description.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))   # synthetic: random checkpoints


def ensure_bundle(work: Path, model_type: str, no_window: bool) -> tuple[Path, Path, float | None]:
    """The checkpoint and its bundle in ``work``; the export's wall time when it ran now."""
    ckpt, bundle = work / "ckpt", work / f"{model_type}.mof"
    if not (ckpt / "checkpoint").exists():
        from mof.export.families import MODEL_TYPES
        from synthetic import make_checkpoint
        cfg = MODEL_TYPES[model_type].config(16000)
        make_checkpoint(ckpt, cfg, model_type=model_type)
    export_s = None
    if not (bundle / "manifest.json").exists():
        t0 = time.perf_counter()
        subprocess.run(["mof-export", str(ckpt), "--model-type", model_type, "-o", str(bundle),
                        "--int8", "--allow-degraded", "--no-full", "--force"]
                       + (["--no-window"] if no_window else []), check=True)
        export_s = time.perf_counter() - t0
    m = json.loads((bundle / "manifest.json").read_text())
    if m["format_version"] == 1:                 # made before bundle format 2: same graphs, rewritten
        subprocess.run(["mof-quantize", str(bundle), "--upgrade"], check=True)
    for flag, precision in (([], "int8"), (["--int4"], "int4")):
        if precision not in m["graphs"]["step"]:
            subprocess.run(["mof-quantize", str(bundle), "--allow-degraded", *flag], check=True)
    return ckpt, bundle, export_s


def tf_reference(ckpt: Path, bundle: Path, tokens: int, model_type: str):
    """xiaothink's own loop: a full TF pass over the last 128 characters per character.
    Returns a function that times it (ms per generated character) each time it is called."""
    from mof.export.checkpoint import list_variables, locate_checkpoint
    from mof.export.keras_model import build_keras_model, restore
    from mof.runtime.manifest import model_config
    from mof.export._tf import import_tf
    import_tf()
    from xiaothink.llm.inference import test as xt
    manifest = json.loads((bundle / "manifest.json").read_text())
    cfg = model_config(manifest)
    prefix = locate_checkpoint(ckpt)
    model = build_keras_model(cfg, model_type)
    restore(model, prefix, list_variables(prefix))
    vocab = json.loads((bundle / "vocab.json").read_text(encoding="utf-8"))
    vocabdata = [{c: i for i, c in enumerate(vocab)}, np.array(vocab)]
    rng = np.random.default_rng(0)
    prompt = "".join(vocab[i] for i in rng.integers(0, len(vocab), 128))
    np.random.seed(0)
    xt.generate_texts_untilstr_loop(model, vocabdata, prompt, num_generate=2, stop_c=[], window=128)

    def ms_per_token() -> float:
        t = time.perf_counter()
        xt.generate_texts_untilstr_loop(model, vocabdata, prompt, num_generate=tokens, stop_c=[],
                                        window=128, temperature=0.68, top_p=0.8, repetition_penalty=1.2)
        return (time.perf_counter() - t) / tokens * 1e3
    return ms_per_token


def main() -> int:
    ap = argparse.ArgumentParser(description="mof vs xiaothink's TF loop on a full-size model")
    ap.add_argument("--model-type", default="t6_beta_dense", help="T6 or T7 type (default t6_beta_dense)")
    ap.add_argument("--workdir", type=Path, default=None, help="default /tmp/mof-headline[-TYPE]")
    ap.add_argument("--no-window", action="store_true",
                    help="export without window.onnx (saves tf2onnx's time; decoding never runs it)")
    ap.add_argument("--tf-tokens", type=int, default=16, help="characters the TF loop generates (default 16)")
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--refill-every", type=int, default=16,
                    help="stream mode's R (default 16: random weights make the bundle's own "
                         "recommendation meaningless)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / time.strftime("%Y-%m-%d"))
    ap.add_argument("--note", help="a sentence on the run's conditions, kept in the JSON and the .md")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="only re-render the .md and .png of a saved run's JSON, next to it")
    args = ap.parse_args()
    if args.render:                              # re-render a saved run's JSON (md, png)
        report = json.loads(args.render.read_text())
        render(report, args.render.parent, args.render.stem)
        return 0
    mt = args.model_type
    args.workdir = args.workdir or Path("/tmp/mof-headline" + ("" if mt == "t6_beta_dense" else f"-{mt}"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    ckpt, bundle, export_s = ensure_bundle(args.workdir, mt, args.no_window)

    from mof.bench.cli import benchmark
    # the TF loop is timed before and after mof-bench (this VM's speed drifts by 10-20 % over
    # minutes); the ratio uses the mean of the two
    tf_loop = tf_reference(ckpt, bundle, args.tf_tokens, mt)
    tf_before = tf_loop()
    report = benchmark(bundle, ["fp32", "int8", "int4"], ["stream", "plain", "exact"], [16, 128, 512],
                       args.decode_tokens, None, refill_every=args.refill_every)
    tf_after = tf_loop()
    tf_ms = (tf_before + tf_after) / 2
    report["tf_reference"] = {"ms_per_token": tf_ms, "before_ms": tf_before, "after_ms": tf_after,
                              "tokens": args.tf_tokens,
                              "what": "xiaothink generate_texts_untilstr_loop, window 128, TF 2.21 + tf_keras"}
    plain = {r["precision"]: r["decode_ms_mean"] for r in report["results"] if r["mode"] == "plain"}
    for r in report["results"]:
        r["speedup_vs_tf"] = tf_ms / r["decode_ms_mean"]
        r["over_plain_stream"] = r["decode_ms_mean"] / plain[r["precision"]] if r["precision"] in plain else None
    if args.note:
        report["note"] = args.note
    manifest = json.loads((bundle / "manifest.json").read_text())
    report["export"] = {"model_type": mt, "family": manifest["model"].get("family", "t6"),
                        "export_wall_s": export_s, "no_window": args.no_window,
                        "refill_every": args.refill_every,
                        "files_mb": {k: round(v["bytes"] / 1e6, 1) for k, v in manifest["files"].items()},
                        "parity_max_abs_diff": manifest["validation"]["max_abs_diff"],
                        "parity_cases": len(manifest["validation"]["cases"]),
                        "step_vs_oracle_max_abs_diff": manifest["validation"]["step"]["max_abs_diff"],
                        "chunk_state_max_rel_diff": manifest["validation"]["chunk"]["max_rel_diff"],
                        "state_floats_per_sequence": manifest["state"]["floats_per_sequence"]}
    stem = "headline" if mt == "t6_beta_dense" else f"headline-{mt}"   # the original keeps its names
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    render(report, args.out, stem)
    return 0


def memory_cells(r: dict) -> str:
    """Load peak RSS, steady RSS and bundle bytes of a result, each with its multiple of the
    precision's weight bytes (what mof-bench measured; blank for runs made before it did)."""
    if "memory_multiples" not in r:
        return " | | "
    x, w = r["memory_multiples"], r["weight_bytes"] / 2**20
    return (f"{r['load_peak_rss_mb']:.0f} ({x['load_peak']:.2f}×; private {x['load_peak_anon']:.2f}×) | "
            f"{r['steady_rss_mb']:.0f} ({x['steady']:.2f}×) | "
            f"{r['bundle_bytes'] / 2**20:.0f} ({x['disk']:.2f}× of {w:.0f} MB weights)")


def render(report: dict, out: Path, stem: str) -> None:
    """headline.md (or headline-TYPE.md) and the plot, from a run's report."""
    from mof.bench.report import format_table, plot
    plot(report, out / f"{stem}.png")
    b, m, tf = report["export"], report["machine"], report["tf_reference"]
    mt, tf_ms = b["model_type"], tf["ms_per_token"]
    rows = ["| decoding | precision | mean ms/token | p50 ms | p95 ms | tokens/s | × TF reference | "
            "× plain stream | × memory floor | TTFT (128) s | load peak RSS MB (private) | steady RSS MB | "
            "bundle MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| TF reference (xiaothink loop) | fp32 | {tf_ms:.0f} | | | {1e3 / tf_ms:.2f} | 1 | | | | | | |"]
    names = {"stream": f"stream, refill every {b['refill_every']}", "plain": "plain stream (no refill)",
             "exact": "exact"}
    for r in report["results"]:
        rows.append(f"| {names[r['mode']]} | {r['precision']} | {r['decode_ms_mean']:.1f} | {r['decode_ms_p50']:.1f} | "
                    f"{r['decode_ms_p95']:.1f} | {r['decode_tokens_per_s']:.1f} | {r['speedup_vs_tf']:.1f} | "
                    f"{r['over_plain_stream']:.2f} | {r['floor_multiple']:.1f} | {r['ttft_s']:.3f} | "
                    + memory_cells(r) + " |")
    flags = f"--model-type {mt} --int8 --allow-degraded --no-full{' --no-window' if b['no_window'] else ''}"
    sizes = ", ".join(f"{k} {v} MB" for k, v in b["files_mb"].items() if k.endswith(".onnx"))
    export = (f"export {b['export_wall_s']:.0f} s (`mof-export {flags}`)" if b["export_wall_s"] else
              "export not timed in this run (the bundle was there)")
    md = [f"# Full-size {mt} (V = 16000, random weights), {report['date']}", "",
          f"Machine: {m['cpu']}, {m['cores']} cores, read bandwidth {m['read_bandwidth_gbs']:.1f} GB/s, "
          f"onnxruntime {m['onnxruntime']}, Python {m['python']}.", "",
          f"Bundle: {export}; {sizes}; parity vs TensorFlow max |Δlogit| {b['parity_max_abs_diff']:.1e} over "
          f"{b['parity_cases']} cases, step graph checks (numpy stream oracle; prefill == steps == chunks) "
          f"{b['step_vs_oracle_max_abs_diff']:.1e}, "
          f"chunk state vs oracle {b['chunk_state_max_rel_diff']:.1e} (relative); state "
          f"{b['state_floats_per_sequence']} floats per sequence.", "", *rows, "",
          f"Reproduce: `python benchmarks/headline.py"
          f"{'' if mt == 't6_beta_dense' else ' --model-type ' + mt}{' --no-window' if b['no_window'] else ''}`. "
          "Batch 1; decode = model call + sampling per "
          "token, mean over the decoded tokens (stream's refills, one chunk-graph pass every R tokens, "
          "are in the mean and the p95, not the p50); the TF reference is xiaothink's own loop (a full pass over the last 128 characters "
          "per character, plus its Python sampling), timed before and after mof-bench "
          f"({tf['before_ms']:.0f} and {tf['after_ms']:.0f} ms per token; the ratios use their mean). "
          "Memory (mof-bench, a fresh process per precision): resident memory above the process's before "
          "Model.load — its peak while loading (and of private memory alone, without the pages of the "
          "weights file onnxruntime maps while it repacks the weights) and after decoding — and the files "
          "decoding opens, each as a multiple of the precision's weight bytes (MB = 2^20 bytes)."]
    if report.get("note"):
        md += ["", report["note"]]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(format_table(report))
    print(f"TF reference: {tf_ms:.0f} ms/token (before mof-bench {tf['before_ms']:.0f}, after {tf['after_ms']:.0f})")
    print(f"wrote {out / stem}.md")

if __name__ == "__main__":
    sys.exit(main())
