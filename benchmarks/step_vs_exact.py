"""Per-token decode latency: stream (step graph) vs exact (window graph), side by side in one process.

    python benchmarks/step_vs_exact.py BUNDLE [--tokens 64] [--threads N]

Both modes decode the same token sequence after the same prompt (a full window,
so exact mode pays what the reference pays per character). Prints p50/p95 per
token for each mode and the ratio. Needs only mof.runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from mof.runtime import Model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--tokens", type=int, default=64, help="decode steps per mode (default 64)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    ap.add_argument("--int8", action="store_true", help="use the bundle's int8 graphs")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()

    model = Model.load(args.bundle, int8=args.int8, threads=args.threads)
    cfg = model.config
    rng = np.random.default_rng(0)
    W = cfg.window
    seq = rng.integers(0, cfg.vocab_size, size=W + args.tokens + 8, dtype=np.int32)

    # warm-up both graphs
    _, state = model.prefill(seq[None, :W])
    for i in range(4):
        if W + 1 <= cfg.max_positions:
            model.step(seq[W + i: W + i + 1], state)
        model.exact_logits(seq[None, i + 1: W + i + 1])

    stream_ms, exact_ms = [], []
    _, state = model.prefill(seq[None, :W])
    for i in range(args.tokens):                      # interleaved: same machine state for both
        tok = seq[W + i: W + i + 1]
        t = time.perf_counter()
        if int(state.position[0]) + 1 > cfg.max_positions:   # table full: re-read the last W (amortised)
            _, state = model.prefill(seq[None, W + i + 1 - W: W + i + 1])
        else:
            _, state = model.step(tok, state)
        stream_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        model.exact_logits(seq[None, i + 1: W + i + 1])
        exact_ms.append((time.perf_counter() - t) * 1e3)

    def summary(ms):
        return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}

    result = {"bundle": str(args.bundle), "precision": model.precision, "window": W, "tokens": args.tokens,
              "threads": args.threads, "stream": summary(stream_ms), "exact": summary(exact_ms)}
    result["exact_over_stream_p50"] = result["exact"]["p50_ms"] / result["stream"]["p50_ms"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.bundle} ({model.precision}): W={W}, {args.tokens} tokens, "
              f"threads={args.threads or 'default'}")
        for mode in ("stream", "exact"):
            r = result[mode]
            print(f"  {mode:<6} p50 {r['p50_ms']:8.2f} ms/token   p95 {r['p95_ms']:8.2f} ms/token")
        print(f"  exact / stream (p50): {result['exact_over_stream_p50']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
