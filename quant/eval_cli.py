"""mof-eval: how faithful each stream decoding policy is on your own text, against exact decoding.

Like llama.cpp's perplexity tool with KL divergence: teacher-forced over the text, every
refill policy and exact mode, perplexity, mean KL(exact || policy), top-1 agreement and
ms per token. Runs on a runtime-only install (numpy + onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.cli_common import add_precision_flags, number, run_command
from mof.runtime.contract import FP32

PROG = "mof-eval"


def build_parser() -> argparse.ArgumentParser:
    from mof.runtime.bundle_default import DEFAULT_BUNDLE
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Measure stream decoding's refill policies against exact decoding on a text "
                    "you bring (teacher-forced): perplexity, its change, mean KL(exact||policy), "
                    "top-1 agreement and ms per token; with --int8 (--int4) also int8 (int4) against fp32.",
        epilog="The bundle's own table (measured at export on its calibration text) is in its "
               "manifest.json under 'stream'; its recommendation is what mof-run uses by default.")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, nargs="?", default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the shipped demo model)")
    p.add_argument("--text", metavar="FILE", type=Path, required=True, help="UTF-8 text to measure on")
    add_precision_flags(p, "measure (policies against that precision's exact decoding; int8 and "
                           "int4 also against fp32, on this machine's CPU)")
    p.add_argument("--tokens", metavar="N", type=number(int, lambda v: v >= 2, "an integer >= 2"),
                   default=512, help="characters of the text to measure on (default 512)")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the report as JSON to FILE")
    p.add_argument("--threads", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
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
        report = {"bundle": str(model.bundle_dir), "policies": policy_table(
            model, text, args.tokens, args.text.name)}
        print(format_table(report["policies"]))
        if precision != FP32:      # the same table as mof-quantize --check: measured on this machine's CPU
            from .bundle_quant import quantized_accuracy
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
