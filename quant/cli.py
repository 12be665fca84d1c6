"""mof-quantize: add int8 or int4 graphs to an existing bundle, with a measured accuracy report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from mof.measure.gates import QUANT_MAX_PPL_CHANGE, QUANT_MIN_TOP1
from mof.runtime.cli_common import run_command, utf8_stdio

PROG = "mof-quantize"


def build_parser() -> argparse.ArgumentParser:
    from mof.measure.calibration import DEFAULT_TOKENS, add_measure_flags
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Add int8 variants of a bundle's graphs (every large weight int8, GRUs "
                    "included; activations quantized per row, uint8 x 7-bit int8 products, so the "
                    "results do not depend on the CPU) or, with --int4, 4-bit variants "
                    "(onnxruntime's MatMulNBits), measure them against fp32 on real text, "
                    "and record the report in the manifest. The bundle is replaced atomically "
                    "and written in bundle format 2 (one weights file per precision). "
                    "With --check: measure a quantized bundle on this machine, change nothing. "
                    "With --upgrade: rewrite a format-1 bundle in format 2, nothing else. "
                    "With --native: add fused int8 graphs for mof's native ops, nothing else.",
        epilog=f"Gates: the quantized graphs must agree with fp32's top-1 on >= {QUANT_MIN_TOP1:.0%} of "
               f"positions and raise perplexity by at most {QUANT_MAX_PPL_CHANGE:.0%}, in exact and in "
               "stream mode; otherwise nothing is written unless --allow-degraded (--check exits 1).")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, help="bundle directory made by mof-export")
    p.add_argument("--int4", dest="precision", action="store_const", const="int4", default="int8",
                   help="4-bit weights instead of int8 (a third precision: mof-run --int4)")
    p.add_argument("--upgrade", action="store_true",
                   help="rewrite a format-1 bundle (every graph with its own weights) in format 2 "
                        "(one weights file per precision), in place; nothing is re-measured")
    p.add_argument("--native", action="store_true",
                   help="add fused variants of the int8 decoding graphs that run mof's native ops "
                        "(docs/native.md; needs a C++ compiler here), reading the same weights file; "
                        "they are checked bit for bit against the stock int8 graphs before they are "
                        "written, and Model.load / mof-run use them where the library loads")
    add_measure_flags(p, "to measure on", tokens_default=None,
                      tokens_default_help=f"{DEFAULT_TOKENS}; with --check: as many as the bundle's own report")
    p.add_argument("--check", action="store_true",
                   help="re-measure the bundle's int8 (or --int4) graphs against fp32 on this machine and print "
                        "the table next to the one recorded at export; the bundle is not changed")
    p.add_argument("--allow-degraded", action="store_true",
                   help="keep the quantized graphs even when they miss the accuracy gates")
    p.add_argument("--force", action="store_true", help="redo graphs of that precision the bundle already has")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _check_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flag combinations that do not go together: a usage error (exit 2)."""
    if args.check and (args.force or args.allow_degraded):
        p.error("--check changes nothing: --force and --allow-degraded do not apply")
    if args.upgrade and (args.check or args.force or args.allow_degraded or args.precision != "int8"):
        p.error("--upgrade only rewrites the bundle's format: it takes no other option")
    if args.native and (args.check or args.upgrade or args.allow_degraded or args.precision != "int8"):
        p.error("--native fuses the bundle's int8 graphs: it takes only --force")


def main(argv: Optional[Sequence[str]] = None) -> int:
    utf8_stdio()
    p = build_parser()
    args = p.parse_args(argv)
    _check_flags(p, args)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.check:
        return run_command(PROG, lambda: check(args, log), debug=args.debug,
                           interrupted="interrupted", unchanged="the bundle is unchanged")
    return run_command(PROG, lambda: write(args, log), debug=args.debug,
                       interrupted="interrupted; the bundle is unchanged", unchanged="the bundle is unchanged")


def write(args: argparse.Namespace, log) -> int:
    """mof-quantize (or --upgrade): the bundle rewritten with the new precision (or format)."""
    from mof.measure.calibration import DEFAULT_TOKENS
    from mof.writer.upgrade import upgrade_bundle

    from .bundle_quant import quantize_bundle
    t0 = time.perf_counter()
    if args.upgrade:
        out = upgrade_bundle(args.bundle, log=log)
    elif args.native:
        from .native import add_native_graphs
        out = add_native_graphs(args.bundle, force=args.force, log=log)
    else:
        out = quantize_bundle(args.bundle, precision=args.precision, calibration_text=args.text,
                              eval_tokens=args.tokens or DEFAULT_TOKENS, allow_degraded=args.allow_degraded,
                              force=args.force, log=log)
    log(f"      done in {time.perf_counter() - t0:.1f} s")
    if not args.quiet:
        print(str(out))
    return 0


def check(args, log) -> int:
    """mof-quantize --check: the quantized precision's accuracy table measured here, next to the
    recorded one."""
    from mof.measure.calibration import load_calibration_text
    from mof.measure.machine import describe_machine
    from mof.measure.report import print_report, quantized_accuracy
    text = source = None
    if args.text:
        text, source = load_calibration_text(args.text), args.text.name
    report = quantized_accuracy(args.bundle, text, args.tokens, source, precision=args.precision)
    say = lambda m: print(m, flush=True)
    print_report(report, say)
    rec = report.get("recorded") or {}
    if rec.get("exact") and rec.get("stream"):
        same = rec.get("text") == report["text"] and rec.get("tokens") == report["tokens"]
        say(f"      recorded in the manifest, on {rec.get('tokens')} tokens of {rec.get('text')} text"
            + ("" if same else " (another text: compare with --text FILE --tokens N)") + ":")
        for mode in ("exact", "stream"):
            r = rec[mode]
            say(f"        {mode:<7}top-1 {r['top1_agreement']:.1%}, mean KL {r['mean_kl']:.2e}, "
                f"perplexity {r['perplexity_change']:+.1%}")
        where = rec.get("measured_on")
        say(f"        measured on: {describe_machine(where) if where else 'not recorded (quantized by a mof that did not record it)'}")
    if not report["passed"]:
        log(f"{PROG}: {args.precision} accuracy on this machine is below the gates (top-1 >= "
            f"{report['gates']['min_top1_agreement']:.0%}, perplexity change <= "
            f"+{report['gates']['max_perplexity_change']:.0%})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
