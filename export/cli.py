"""mof-export: turn a Xiaothink T6 checkpoint into a validated ONNX bundle."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.errors import MofError

from .families import REFERENCE_WINDOW, T6_TYPES

PROG = "mof-export"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a Xiaothink T6 (MoF) TensorFlow checkpoint to an ONNX bundle: "
                    "manifest.json, vocab.json, full.onnx and window.onnx. The network is rebuilt "
                    "with xiaothink's own code, converted with tf2onnx, and checked against "
                    "TensorFlow before anything is written.",
        epilog="Sizes the checkpoint's shapes fix (vocabulary, widths, layer counts, position "
               "table) are read from it; --model-type supplies heads and the transformer window "
               "and cross-checks the rest. Example: mof-export ckpt_dir/ --model-type t6_beta_dense")
    p.add_argument("checkpoint", metavar="CKPT",
                   help="checkpoint prefix (DIR/ckpt-10), its .index file, or a folder with a "
                        "'checkpoint' file (its latest checkpoint is used)")
    p.add_argument("-o", "--output", metavar="DIR", type=Path,
                   help="bundle directory to create (default: ./NAME.mof)")
    p.add_argument("--vocab", metavar="FILE", type=Path,
                   help="vocabulary (Python list literal or JSON list; default: the single "
                        "vocab*.txt next to the checkpoint)")
    p.add_argument("--model-type", metavar="NAME", choices=sorted(T6_TYPES),
                   help=f"T6 family member: {', '.join(T6_TYPES)}")
    p.add_argument("--heads", metavar="H", type=_positive_int,
                   help="attention heads (overrides the model type; required without it)")
    p.add_argument("--trans-window", metavar="Wt", type=_positive_int,
                   help="positions the transformer expert sees (overrides the model type; "
                        "required without it)")
    p.add_argument("--window", metavar="W", type=_positive_int,
                   help=f"characters re-read per generated character in exact decoding "
                        f"(default {REFERENCE_WINDOW}, the reference's)")
    p.add_argument("--atol", metavar="X", type=_positive_float, default=1e-4,
                   help="max |Δlogit| allowed between TensorFlow and onnxruntime (default 1e-4)")
    p.add_argument("--calibration-text", metavar="FILE", type=Path,
                   help="UTF-8 text to measure stream against exact decoding on (default: a "
                        "built-in sample of classical Chinese poems and prose)")
    p.add_argument("--eval-tokens", metavar="N", type=_positive_int, default=256,
                   help="characters of that text to measure on (default 256)")
    p.add_argument("--no-full", dest="full", action="store_false",
                   help="leave out full.onnx (logits at every position: for analysis; decoding "
                        "uses only window.onnx and step.onnx)")
    p.add_argument("--int8", action="store_true",
                   help="also write int8 window and step graphs, with an accuracy report against "
                        "fp32 (same as running mof-quantize on the bundle afterwards)")
    p.add_argument("--allow-degraded", action="store_true",
                   help="with --int8: keep int8 graphs that miss the accuracy gates")
    p.add_argument("--force", action="store_true",
                   help="replace an existing bundle at the output path")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--debug", action="store_true",
                   help="show tracebacks and TensorFlow/tf2onnx logs")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ._tf import import_tf
    from .pipeline import STAGES, ExportOptions, export_checkpoint
    from .progress import Progress

    progress = Progress(STAGES + args.int8, quiet=args.quiet)
    opts = ExportOptions(checkpoint=Path(args.checkpoint), output=args.output, vocab=args.vocab,
                         model_type=args.model_type, num_heads=args.heads,
                         trans_window=args.trans_window, window=args.window, force=args.force,
                         atol=args.atol, calibration_text=args.calibration_text,
                         eval_tokens=args.eval_tokens, int8=args.int8, full=args.full,
                         allow_degraded=args.allow_degraded)
    try:
        import_tf(verbose=args.debug)
        out = export_checkpoint(opts, progress)
    except MofError as e:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except OSError as e:
        if args.debug:
            traceback.print_exc()
        where = f" ({e.filename})" if e.filename else ""
        print(f"{PROG}: error: {e.strerror or e}{where}; nothing was written", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not a user mistake: still one line unless --debug
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {e}; rerun with --debug for the "
              "traceback", file=sys.stderr)
        return 1
    if not args.quiet:
        print(str(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
