"""A bundle's int8 decoding, stock graphs against the fused ones (mof-quantize --native), as
Model.load runs them: stream mode (R = 16 by default: a step per token, a refill every R) and exact
mode (a window pass per token), tokens per second.

    python benchmarks/native_bundle.py BUNDLE [--rounds 10] [--tokens 64] [--refill-every 16]
                                              [--threads N] [--out FILE.md]

Both models are loaded in one process (Model.load(native=False) and Model.load(native=True), mof's
session settings), a pair per mode; their logits are first compared bit for bit over a stream with refills and a
few exact windows (max |d| printed). Then rounds, interleaved (each round times the two models in
turn, the order alternating), each model decoding ``--tokens`` tokens in each mode after an untimed
prompt of W tokens; tokens/s is model time only (no sampling: ids are fixed random ones). The
table gives the median over rounds of each one's tokens/s and of the per-round ratios
native / stock. Ratios, not absolute figures, are the result: name the CPU with them.
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


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def stream_tps(model, ids: np.ndarray, W: int, R: int, n: int) -> float:
    from mof.runtime.decoder import StreamDecoder
    dec = StreamDecoder(model, refill_every=R)
    dec.feed(ids[:W].tolist())
    t = time.perf_counter()
    for tok in ids[W:W + n]:
        dec.feed([int(tok)])
    return n / (time.perf_counter() - t)


def exact_tps(model, ids: np.ndarray, W: int, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        model.exact_logits(ids[i + 1:i + 1 + W][None, :])
    return n / (time.perf_counter() - t)


def check_equal(streams: dict, exacts: dict, ids: np.ndarray, W: int) -> float:
    """Max |d| of the stock and native models' logits over a stream with refills (R = 4; the
    stream pair) and 8 exact windows (the exact pair); raises if any bit differs."""
    from mof.runtime.decoder import StreamDecoder
    worst = 0.0
    decs = [StreamDecoder(streams[k], refill_every=4) for k in ("stock", "native")] if streams else []
    pairs = [[d.feed(ids[i:i + 2].tolist()) for d in decs] for i in range(0, 2 * W, 2)] if decs else []
    pairs += [[exacts[k].exact_logits(ids[i:i + W][None, :]) for k in ("stock", "native")] for i in range(8)]
    for a, b in pairs:
        worst = max(worst, float(np.max(np.abs(a - b))))
        if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
            raise SystemExit(f"native_bundle: logits differ (max |d| {worst:g})")
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    ap.add_argument("--tokens", type=int, default=64, help="tokens decoded per mode per round (default 64)")
    ap.add_argument("--refill-every", type=int, default=16, help="stream mode's R (default 16)")
    ap.add_argument("--modes", default="stream,exact",
                    help="comma list of stream and exact (default both; exact alone: no step runs in the process)")
    ap.add_argument("--threads", type=int, help="intra-op threads (default: onnxruntime's, one per core)")
    ap.add_argument("--out", type=Path, help="also write the table here (and the numbers beside it, .json)")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from mof.runtime.model import Model
    load = {"stock": False, "native": True}
    # each mode its own pair of models: one mode's runs leave the other's sessions as they were
    pairs = {mode: {k: Model.load(args.bundle, precision="int8", threads=args.threads, native=v)
                    for k, v in load.items()} for mode in args.modes.split(",")}
    models = next(iter(pairs.values()))
    W = models["stock"].config.window
    ids = np.random.default_rng(0).integers(0, models["stock"].config.vocab_size, size=3 * W + args.tokens)
    diff = check_equal(pairs.get("stream"), pairs.get("exact") or models, ids, W)
    print(f"native_bundle: {models['native'].kernels}; logits bit-equal, max |d| = {diff:g}", file=sys.stderr)
    runs = {"stream": lambda m: stream_tps(m, ids, W, args.refill_every, args.tokens),
            "exact": lambda m: exact_tps(m, ids, W, max(8, args.tokens // 4))}
    runs = {mode: run for mode, run in runs.items() if mode in pairs}
    for mode, run in runs.items():                       # untimed warm-up of each
        for m in pairs[mode].values():
            run(m)
    tps = {(mode, k): [] for mode in runs for k in models}
    for r in range(args.rounds):
        for mode, run in runs.items():
            for k in (("stock", "native") if r % 2 == 0 else ("native", "stock")):
                tps[mode, k].append(run(pairs[mode][k]))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{m} {k} {v[-1]:.1f}" for (m, k), v in tps.items()),
              file=sys.stderr)
    rows = []
    for mode in runs:
        s, n = tps[mode, "stock"], tps[mode, "native"]
        rows.append({"mode": f"stream R={args.refill_every}" if mode == "stream" else "exact (window pass per token)",
                     "stock_tps": round(statistics.median(s), 1), "native_tps": round(statistics.median(n), 1),
                     "native_over_stock": round(statistics.median(b / a for a, b in zip(s, n)), 3)})
    head = (f"{args.bundle.name}, int8, stock vs {models['native'].kernels} graphs; {cpu_name()}, "
            f"onnxruntime {ort.__version__}, threads {args.threads or 'default'}, {args.rounds} interleaved "
            f"rounds of {args.tokens} tokens, model time only; logits bit-equal (max |d| = {diff:g})")
    text = "\n".join([head, "", "| mode | stock tok/s | native tok/s | native / stock |", "|---|---:|---:|---:|",
                      *(f"| {r['mode']} | {r['stock_tps']} | {r['native_tps']} | {r['native_over_stock']} |"
                        for r in rows)]) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"bundle": str(args.bundle), "cpu": cpu_name(), "onnxruntime": ort.__version__,
             "kernels": models["native"].kernels, "threads": args.threads, "rounds": args.rounds,
             "tokens": args.tokens, "max_abs_diff": diff, "rows": rows,
             "per_round": {f"{m}/{k}": v for (m, k), v in tps.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
