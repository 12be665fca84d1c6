"""Per-token decode cost of each decoding policy, side by side in one process.

    python benchmarks/decode_cost.py BUNDLE [--int8] [--tokens 256] [--refill-every 16 32 ...] [--json FILE]

Exact mode, plain stream (steps only, no refill before the position table is full: the
baseline) and stream with the refill rule at each R (default: the bundle's recommendation and
W/2, W/4, 16, 8) decode the same token sequence after the same full-window prompt, interleaved
token by token so every policy sees the same machine state. Prints the mean (what a refill costs, spread over R tokens),
p50 and p95 per token and each policy's mean over plain stream's. Needs only mof.runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mof.runtime import Model
from mof.measure.plain import PlainDecoder
from mof.runtime.decoder import ExactDecoder, StreamDecoder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--tokens", type=int, default=256, help="decoded tokens per policy (default 256)")
    ap.add_argument("--refill-every", type=int, nargs="*", help="R values (default: recommended, W/2, W/4, 16, 8)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: onnxruntime's)")
    ap.add_argument("--int8", action="store_true", help="use the bundle's int8 graphs")
    ap.add_argument("--json", type=Path, help="write the result as JSON to this file")
    args = ap.parse_args()

    model = Model.load(args.bundle, int8=args.int8, threads=args.threads)
    cfg = model.config
    W = cfg.window
    Rs = args.refill_every or sorted({model.recommended_refill_every, W // 2, W // 4, 16, 8} - {1}, reverse=True)
    Rs = [r for r in Rs if 1 <= r <= W]
    decoders = {"exact": ExactDecoder(model), "plain stream": PlainDecoder(model)}
    decoders.update({f"stream R={r}": StreamDecoder(model, r) for r in Rs})
    seq = np.random.default_rng(0).integers(0, cfg.vocab_size, size=W + args.tokens, dtype=np.int32)
    for d in decoders.values():                        # the prompt, and a warm-up of both graphs
        d.feed(seq[:W])
    times = {name: [] for name in decoders}
    for i in range(args.tokens):                       # interleaved: the same machine state for all
        for name, d in decoders.items():
            t = time.perf_counter()
            d.feed(seq[W + i: W + i + 1])
            times[name].append((time.perf_counter() - t) * 1e3)

    rows = {}
    for name, ms in times.items():
        ms = np.asarray(ms)
        rows[name] = {"mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
                      "p95_ms": float(np.percentile(ms, 95)), "refills": decoders[name].refills}
    base = rows["plain stream"]["mean_ms"]
    for r in rows.values():
        r["over_plain_stream"] = r["mean_ms"] / base
    result = {"bundle": str(args.bundle), "precision": model.precision, "window": W, "tokens": args.tokens,
              "threads": args.threads, "recommended_refill_every": model.recommended_refill_every,
              "policies": rows}
    print(f"{args.bundle} ({model.precision}): W={W}, {args.tokens} tokens per policy, "
          f"threads={args.threads or 'default'}, recommended R={model.recommended_refill_every}")
    print(f"  {'policy':<16}{'mean ms':>9}{'p50 ms':>9}{'p95 ms':>9}{'refills':>9}{'× plain':>9}")
    for name, r in rows.items():
        print(f"  {name:<16}{r['mean_ms']:>9.2f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}{r['refills']:>9}"
              f"{r['over_plain_stream']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
