"""Soak: stream-generate many tokens in one session and watch numbers and memory.

    python benchmarks/soak.py [--tokens 20000] [--bundle BUNDLE] [--int8]

Checks every step: logits finite; GRU states inside [-1, 1]; records the largest
attention-sum magnitude (it grows with the position, bounded by the refill rule:
positions stay below W) and the largest position, and the process RSS after warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from mof.runtime import DEFAULT_BUNDLE, Generator, Model, SamplingConfig
from mof.bench.memory import peak_rss_mb


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    ap.add_argument("--int8", action="store_true")
    args = ap.parse_args()
    model = Model.load(args.bundle, int8=args.int8)
    gen = Generator(model, "床前明月光，", SamplingConfig(max_tokens=args.tokens, seed=0, temperature=0.8),
                    mode="stream")
    warm, rss_after_warmup, worst_gru, worst_sum, worst_pos = 500, None, 0.0, 0.0, 0
    t = time.perf_counter()
    for i, _ in enumerate(gen):
        s = gen.state
        if not np.isfinite(gen.decoder.logits).all():
            print(f"non-finite logits at token {i}")
            return 1
        worst_gru = max(worst_gru, float(np.abs(s.rnn_h).max()), float(np.abs(s.emb_h).max()),
                        float(np.abs(s.router_h).max()))
        worst_pos = max(worst_pos, int(s.position[0]))
        if s.attn_u.size:
            worst_sum = max(worst_sum, float(np.abs(s.attn_u).max()))
        if i == warm:
            rss_after_warmup = rss_mb()
    result = {"tokens": gen.stats.generated_tokens, "refills": gen.stats.refills,
              "seconds": round(time.perf_counter() - t, 1), "max_abs_gru_state": worst_gru,
              "max_abs_value_sum": worst_sum, "max_position": worst_pos,
              "window": model.config.window, "refill_every": gen.decoder.refill_every,
              "rss_after_warmup_mb": rss_after_warmup,
              "rss_end_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(),
              "precision": model.precision}
    result["rss_growth_mb"] = result["rss_end_mb"] - (rss_after_warmup or result["rss_end_mb"])
    print(json.dumps(result, indent=2))
    ok = worst_gru <= 1.0 + 1e-6 and result["rss_growth_mb"] <= 5 and worst_pos <= model.config.window
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
