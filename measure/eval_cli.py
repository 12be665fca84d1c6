"""mof-eval: how faithful each stream decoding policy is on your own text, against exact decoding.

Like llama.cpp's perplexity tool with KL divergence: teacher-forced over the text, every
refill policy and exact mode, perplexity, mean KL(exact || policy), top-1 agreement and
ms per token. Runs on a runtime-only install (numpy + onnxruntime). After the table: the
mof-run command that applies the recommendation — or, on a text too short for the table to
mean anything (fewer than gates.MIN_EVAL_WINDOWS x W characters measured), a warning and no
recommendation.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.cli_common import add_precision_flags, number, run_command
from mof.runtime.contract import FP32

from .calibration import add_measure_flags
from .gates import MIN_EVAL_WINDOWS

PROG = "mof-eval"
EVAL_TOKENS = 512       # mof-eval's default --tokens: the user's text is what the command is run for
                        # (an export or a quantization measures calibration.DEFAULT_TOKENS on the side)
TOO_SHORT = ("below W the window never slides, so the refill dial is never exercised; below 2W the "
             "largest R (W/2) has refilled fewer than 4 times")


def shell_join(words: list[str]) -> str:
    return subprocess.list2cmdline(words) if sys.platform == "win32" else shlex.join(words)


def apply_command(bundle: Path, default_bundle: Path, precision: str, mode: str, refill: int) -> list[str]:
    """The mof-run command that decodes as recommended (the bundle and precision measured)."""
    words = ["mof-run"]
    if bundle.resolve() != default_bundle.resolve():
        words += ["--model", str(bundle)]
    if precision != FP32:
        words += ["--precision", precision]
    return words + (["--mode", "stream", "--refill-every", str(refill)] if mode == "stream" else ["--mode", "exact"])


def strip_recommendation(table: str) -> str:
    """The policy table without its recommendation (a text too short to make one)."""
    lines = [line.replace("  <- recommended", "") for line in table.splitlines()]
    return "\n".join(line for line in lines if not line.startswith("recommended: "))


def build_parser() -> argparse.ArgumentParser:
    from mof.runtime.bundle_default import DEFAULT_BUNDLE
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Measure stream decoding's refill policies against exact decoding on a text "
                    "you bring (teacher-forced): perplexity, its change, mean KL(exact||policy), "
                    "top-1 agreement and ms per token; with --int8 (--int4) also int8 (int4) against fp32.",
        epilog="After the table: the mof-run command that decodes as recommended. Fewer than "
               f"{MIN_EVAL_WINDOWS} x W measured characters (128 for the demo, W = 64) get a warning and no "
               "recommendation: " + TOO_SHORT + ". The bundle's own table (measured at export on its "
               "calibration text) is in its manifest.json under 'stream'; its recommendation is what "
               "mof-run uses by default.")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, nargs="?", default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the shipped demo model)")
    add_measure_flags(p, "to measure on", text_required=True, tokens_default=EVAL_TOKENS)
    add_precision_flags(p, "measure (policies against that precision's exact decoding; int8 and "
                           "int4 also against fp32, on this machine's CPU)")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the report as JSON to FILE")
    p.add_argument("--threads", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        from mof.runtime.bundle_default import DEFAULT_BUNDLE
        from mof.runtime.errors import MofError
        from mof.runtime.model import Model

        from .calibration import load_calibration_text
        from .policies import format_table, policy_table

        text = load_calibration_text(args.text)
        if not text.strip():
            raise MofError(f"{args.text} holds no text")
        if args.json and args.json.exists() and args.json.is_dir():
            raise MofError(f"--json {args.json} is a directory")
        model = Model.load(args.bundle, precision=args.precision, threads=args.threads)
        precision = model.precision
        print(f"{PROG}: {model.bundle_dir.name}, {precision}, {min(len(text) - 1, args.tokens)} "
              f"characters of {args.text.name}", file=sys.stderr)
        table = policy_table(model, text, args.tokens, args.text.name)
        report = {"bundle": str(model.bundle_dir), "policies": table}
        need = MIN_EVAL_WINDOWS * table["window"]
        if table["tokens"] < need:
            print(strip_recommendation(format_table(table)))
            fix = (f"pass --tokens {need} or more" if len(text) - 1 >= need else
                   f"give a --text of at least {need + 1} characters")
            warning = (f"warning: {table['tokens']} characters measured, too few for a recommendation: "
                       f"need at least {need} = {MIN_EVAL_WINDOWS} x W ({TOO_SHORT}); {fix}")
            print(f"{PROG}: {warning}", file=sys.stderr)
            report["apply"] = {"command": None, "warning": warning, "min_tokens": need}
        else:
            print(format_table(table))
            mode, refill = table["recommended_mode"], table["recommended_refill_every"]
            command = apply_command(args.bundle, DEFAULT_BUNDLE, precision, mode, refill)
            same = (mode, refill if mode == "stream" else None) == (
                model.recommended_mode, model.recommended_refill_every if model.recommended_mode == "stream" else None)
            print(f"to decode this way: {shell_join(command)}"
                  + ("   (the bundle's own recommendation too: plain mof-run already does)" if same else ""))
            if mode == "stream":
                print(f"  (Python: Generator(model, prompt, sampling, mode=\"stream\", refill_every={refill}); "
                      f"mof-serve: \"mode\": \"stream\", \"refill_every\": {refill} in a request's body)")
            else:
                print("  (Python: Generator(model, prompt, sampling, mode=\"exact\"); mof-serve: \"mode\": "
                      "\"exact\" in a request's body)")
            report["apply"] = {"command": command, "mode": mode, "refill_every": refill, "min_tokens": need}
        if precision != FP32:      # the same table as mof-quantize --check: measured on this machine's CPU
            from .report import quantized_accuracy
            from .report import print_report
            key = f"{precision}_vs_fp32"
            report[key] = quantized_accuracy(args.bundle, text, args.tokens, args.text.name, args.threads, precision)
            print_report(report[key], print)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return 0

    return run_command(PROG, work, debug=args.debug, interrupted="interrupted")


if __name__ == "__main__":
    sys.exit(main())
