"""mof-quantize: add int8 graphs to an existing bundle, with a measured accuracy report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.cli_common import run_command, utf8_stdio

PROG = "mof-quantize"


def main(argv: Optional[Sequence[str]] = None) -> int:
    utf8_stdio()
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Add int8 variants of a bundle's window and step graphs (every large weight "
                    "int8, GRUs included), measure them against fp32 on real text, and record the "
                    "report in the manifest. The bundle is replaced atomically.",
        epilog="Gates: int8 must agree with fp32's top-1 on >= 95%% of positions and raise "
               "perplexity by at most 5%%, in exact and in stream mode; otherwise nothing is "
               "written unless --allow-degraded.")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, help="bundle directory made by mof-export")
    p.add_argument("--calibration-text", metavar="FILE", type=Path,
                   help="UTF-8 text to measure on (default: built-in classical Chinese sample)")
    p.add_argument("--eval-tokens", metavar="N", type=int, default=256,
                   help="characters of that text to measure on (default 256)")
    p.add_argument("--allow-degraded", action="store_true",
                   help="keep the int8 graphs even when they miss the accuracy gates")
    p.add_argument("--force", action="store_true", help="redo int8 graphs the bundle already has")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    if args.eval_tokens < 2:
        p.error("--eval-tokens must be at least 2")
    from .bundle_int8 import quantize_bundle

    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    def work() -> int:
        t0 = time.perf_counter()
        out = quantize_bundle(args.bundle, calibration_text=args.calibration_text,
                              eval_tokens=args.eval_tokens, allow_degraded=args.allow_degraded,
                              force=args.force, log=log)
        log(f"      done in {time.perf_counter() - t0:.1f} s")
        if not args.quiet:
            print(str(out))
        return 0

    return run_command(PROG, work, debug=args.debug, interrupted="interrupted; the bundle is unchanged",
                       unchanged="the bundle is unchanged")

if __name__ == "__main__":
    sys.exit(main())
