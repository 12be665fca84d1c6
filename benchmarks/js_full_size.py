"""The JavaScript package on a full-size bundle: the same token ids as mof.runtime, and its speed.

    python benchmarks/js_full_size.py BUNDLE [--precision int8 fp32] [--max-tokens 40] [--json FILE]

tests/js/write_fixture.py records what mof.runtime samples on BUNDLE (a copy, so nothing changes
under the run) for three cases — a chat turn pair in stream mode at the bundle's R, the same in exact
mode, a greedy raw continuation of 90 held-out characters — with the uniform draws behind every
token, and the logits of five windows. js/bench/compare.mjs then replays the draws with the JS
package on onnxruntime-node and on onnxruntime-web (WebAssembly, 1 thread). Printed: per runtime and
precision, the cases whose ids equal Python's (the first differing token otherwise), the largest
logit difference and argmax agreement, and whole-turn tokens/s (prompt included) next to Python's
for the same turns, with the machine. A benchmark, not a test: it takes minutes on a full-size bundle.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mof.measure.machine import describe_machine, measured_on
from mof.runtime import Model, SamplingConfig
from mof.runtime.chat_session import ChatSession

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "js"))
import write_fixture  # noqa: E402

CASES = ["chat-stream", "chat-exact", "raw-stream-greedy-long-stop"]


def python_speed(bundle: Path, fixture: dict, precision: str) -> tuple[int, float]:
    """(tokens, seconds) of mof.runtime decoding the fixture's turns again, the seeds giving the same draws."""
    model = Model.load(bundle, precision=precision)
    tokens, seconds = 0, 0.0
    for c in (c for c in fixture["cases"] if c["precision"] == precision):
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in c["sampling"].items()}
        session = ChatSession(model, SamplingConfig(**options), mode=c["mode"], form=c["form"],
                              refill_every=c["refill_every"])
        for turn in c["turns"]:
            t = time.perf_counter()
            gen = session.continue_text(turn["user"]) if c["form"] == "raw" else session.turn(turn["user"])
            "".join(gen)
            seconds += time.perf_counter() - t
            session.finish(gen)
            tokens += gen.stats.generated_tokens
    return tokens, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--precision", nargs="+", choices=("fp32", "int8"), default=["int8"])
    ap.add_argument("--max-tokens", type=int, default=40, help="tokens per reply at most (default 40)")
    ap.add_argument("--flavours", nargs="+", default=["onnxruntime-node", "onnxruntime-web"])
    ap.add_argument("--json", type=Path, help="write the result as JSON to this file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="js_full_size."))
    try:
        bundle = work / args.bundle.name
        print(f"copying {args.bundle} ...", file=sys.stderr)
        shutil.copytree(args.bundle, bundle)
        fixture_file = work / "fixture.json"
        t = time.perf_counter()
        assert write_fixture.main([str(fixture_file), "--bundle", str(bundle), "--cases", *CASES, "--precision",
                                   *args.precision, "--max-tokens", str(args.max_tokens), "--no-broken"]) == 0
        print(f"the Python fixture in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        fixture = json.loads(fixture_file.read_text(encoding="utf-8"))
        results = {"python": {p: python_speed(bundle, fixture, p) for p in args.precision}}
        for flavour in args.flavours:
            print(f"replaying with {flavour} ...", file=sys.stderr)
            proc = subprocess.run(["node", str(ROOT / "js" / "bench" / "compare.mjs"), str(fixture_file), flavour],
                                  capture_output=True, text=True, cwd=ROOT / "js", timeout=7200)
            if proc.returncode:
                sys.exit(f"js_full_size: {flavour} failed: {proc.stderr.strip()[-800:]}")
            results[flavour] = json.loads(proc.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.bundle.name}: {len(fixture['cases'])} cases, at most {args.max_tokens} tokens a reply; "
          f"{describe_machine(measured_on())}")
    for precision in args.precision:
        tokens, seconds = results["python"][precision]
        print(f"  {precision}: python (onnxruntime {fixture['onnxruntime']}) {tokens / seconds:6.1f} tok/s")
        for flavour in args.flavours:
            r = results[flavour]
            rows = [c for c in r["cases"] if c["precision"] == precision]
            equal = [c["name"] for c in rows if c["equal"]]
            differ = [f"{c['name']} at turn {c['first_difference']['turn']} token {c['first_difference']['token']}"
                      for c in rows if not c["equal"]]
            tps = sum(c["tokens"] for c in rows) / (sum(c["ms"] for c in rows) / 1000)
            lg = r["logits"][precision]
            print(f"  {precision}: {flavour} {r['version']:8s} {tps:6.1f} tok/s ({tps * seconds / tokens:.2f}x python); "
                  f"ids equal in {len(equal)}/{len(rows)} cases{' (differ: ' + '; '.join(differ) + ')' if differ else ''}; "
                  f"max |logit diff| {lg['max_abs_diff']:.2e}, argmax {lg['argmax_equal']}/{lg['windows']}")
    if args.json:
        args.json.write_text(json.dumps({"bundle": args.bundle.name, "results": results, "machine": measured_on()},
                                        indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
