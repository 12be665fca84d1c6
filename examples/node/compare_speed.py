#!/usr/bin/env python3
"""Node (generate.js, onnxruntime-node) next to mof.runtime on the same bundle: greedy stream decoding,
same prompt, same number of tokens, fp32 and int8; checks the ids agree and prints decode tokens/s.

    npm ci --prefix examples/node
    python examples/node/compare_speed.py [--model BUNDLE] [--tokens 256] [--repeats 5]

Both sides count the same way: tokens generated / time from the prompt's logits to the state having
read the last token (one step-graph call per token), with onnxruntime's default thread count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from mof.runtime import DEFAULT_BUNDLE, Generator, Model, SamplingConfig

HERE = Path(__file__).resolve().parent


def python_run(model: Model, prompt: str, n: int) -> tuple[list[int], float]:
    gen = Generator(model, prompt, SamplingConfig(temperature=0, repetition_penalty=1.0, max_tokens=n),
                    mode="stream")
    ids, sample = [], gen.sampler.sample
    gen.sampler.sample = lambda logits, recent: ids.append(sample(logits, recent)) or ids[-1]
    for _ in gen:
        pass
    return ids, gen.stats.decode_tokens_per_s


def node_run(node: str, bundle: Path, prompt: str, n: int, int8: bool) -> tuple[list[int], float]:
    cmd = [node, str(HERE / "generate.js"), "--model", str(bundle), "--prompt", prompt,
           "--max-new-tokens", str(n), "--ids"] + (["--int8"] if int8 else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout)
    return out["ids"], out["decode_tokens_per_s"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE)
    p.add_argument("--prompt", default="床前明月光，")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    node = shutil.which("node")
    if node is None:
        print("compare_speed.py: error: node is not installed", file=sys.stderr)
        return 1
    print(f"{args.model.name}: greedy stream decoding of {args.tokens} tokens after {args.prompt!r}, "
          f"median of {args.repeats} interleaved runs")
    print(f"{'precision':<10}{'Python tok/s':>14}{'Node tok/s':>12}{'Python ms/tok':>15}{'Node ms/tok':>13}"
          "   ids equal")
    for int8 in (False, True):
        model = Model.load(args.model, int8=int8, graphs=("step",))   # the only graph either side runs
        py_ids, _ = python_run(model, args.prompt, args.tokens)            # warm-up, and the ids
        node_ids, _ = node_run(node, args.model, args.prompt, args.tokens, int8)
        py_runs, node_runs = [], []
        for _ in range(args.repeats):                                       # interleaved: same conditions
            py_runs.append(python_run(model, args.prompt, args.tokens)[1])
            node_runs.append(node_run(node, args.model, args.prompt, args.tokens, int8)[1])
        py, nd = statistics.median(py_runs), statistics.median(node_runs)
        print(f"{'int8' if int8 else 'fp32':<10}{py:>14.0f}{nd:>12.0f}{1000 / py:>15.2f}{1000 / nd:>13.2f}"
              f"   {py_ids == node_ids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
