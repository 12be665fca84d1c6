"""mof-export: turn a Xiaothink T6 or T7 checkpoint into a validated ONNX bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from mof.measure.calibration import add_measure_flags
from mof.runtime.chat import FORMS
from mof.runtime.cli_common import number, run_command, utf8_stdio

from .families import MODEL_TYPES, REFERENCE_WINDOW, T6_TYPES, T7_TYPES

PROG = "mof-export"
POSITIVE_INT = number(int, lambda v: v >= 1, "a positive integer")
POSITIVE_FLOAT = number(float, lambda v: v > 0, "a positive number")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a Xiaothink T6 or T7 (MoF) TensorFlow checkpoint to an ONNX bundle: "
                    "manifest.json, vocab.json, the decoding graphs step.onnx (stream decoding's "
                    "step), chunk.onnx (exact decoding and stream refills) and decode.onnx (both "
                    "in one graph: what mof.runtime loads), their weights in weights.fp32.bin, "
                    "and full.onnx and window.onnx for analysis (--no-full, --no-window leave them "
                    "out); with --int8 also the decoding graphs' int8 variants. full.onnx and "
                    "window.onnx are converted with tf2onnx, the decoding graphs written from the "
                    "weights; all are checked (against TensorFlow and an independent numpy "
                    "network) before anything is written, then the stream refill policies are "
                    "measured against exact decoding.",
        epilog="Sizes the checkpoint's shapes fix (vocabulary, widths, layer counts, position "
               "table; T6 or T7, by the temperature expert's variables) are read from it; "
               "--model-type supplies heads and the transformer window and cross-checks the rest. "
               "Example: mof-export ckpt_dir/ --model-type t6_beta_dense")
    _add_model_flags(p)
    _add_output_flags(p)
    return p


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """What is exported: the checkpoint, its vocabulary and the sizes and form it does not record."""
    from .pipeline import ExportOptions
    p.add_argument("checkpoint", metavar="CKPT",
                   help="checkpoint prefix (DIR/ckpt-10), its .index file, or a folder with a "
                        "'checkpoint' file (its latest checkpoint is used)")
    p.add_argument("--vocab", metavar="FILE", type=Path,
                   help="vocabulary (Python list literal or JSON list; default: the single "
                        "vocab*.txt next to the checkpoint)")
    p.add_argument("--model-type", metavar="NAME", choices=sorted(MODEL_TYPES),
                   help=f"xiaothink model type: T6 {', '.join(T6_TYPES)}; T7 {', '.join(T7_TYPES)}")
    p.add_argument("--heads", metavar="H", type=POSITIVE_INT,
                   help="attention heads (overrides the model type; required without it)")
    p.add_argument("--trans-window", metavar="Wt", type=POSITIVE_INT,
                   help="positions the transformer expert sees (overrides the model type; "
                        "required without it)")
    p.add_argument("--form", choices=FORMS, default=ExportOptions.form,
                   help="the prompt form the model was trained on, recorded in the bundle for "
                        "mof-run and apps: chat, instruct or pretrain (xiaothink's templates) or raw "
                        f"(plain text, no template) (default {ExportOptions.form})")
    p.add_argument("--window", metavar="W", type=POSITIVE_INT,
                   help=f"characters re-read per generated character in exact decoding "
                        f"(default {REFERENCE_WINDOW}, the reference's)")


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    """What is written and checked, and how the command talks."""
    from .pipeline import ExportOptions
    p.add_argument("-o", "--output", metavar="DIR", type=Path,
                   help="bundle directory to create (default: ./NAME.mof)")
    p.add_argument("--atol", metavar="X", type=POSITIVE_FLOAT, default=ExportOptions.atol,
                   help=f"max |Δlogit| allowed between TensorFlow and onnxruntime (default {ExportOptions.atol:g})")
    add_measure_flags(p, "to measure stream against exact decoding on (with --int8 also int8 against fp32)",
                      tokens_default=ExportOptions.eval_tokens)
    p.add_argument("--no-full", dest="full", action="store_false",
                   help="leave out full.onnx (logits at every position: for analysis; decoding "
                        "uses only the step, chunk and decode graphs)")
    p.add_argument("--no-window", dest="window_graph", action="store_false",
                   help="leave out window.onnx (tf2onnx's last-position graph: decoding does not "
                        "need it; exact mode runs the chunk graph, checked against TensorFlow the same way)")
    p.add_argument("--int8", action="store_true",
                   help="also write int8 step, chunk and decode graphs, with an accuracy report against "
                        "fp32 (same as running mof-quantize on the bundle afterwards)")
    p.add_argument("--allow-degraded", action="store_true",
                   help="with --int8: keep int8 graphs that miss the accuracy gates")
    p.add_argument("--force", action="store_true",
                   help="replace an existing bundle at the output path")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("--debug", action="store_true",
                   help="show tracebacks and TensorFlow/tf2onnx logs")


def main(argv: Optional[Sequence[str]] = None) -> int:
    utf8_stdio()
    args = build_parser().parse_args(argv)
    from ._tf import import_tf
    from .pipeline import ExportOptions, check_inputs, export_checkpoint, stage_count
    from .progress import Progress

    progress = Progress(stage_count(args.int8), quiet=args.quiet)
    opts = ExportOptions(checkpoint=Path(args.checkpoint), output=args.output, vocab=args.vocab,
                         model_type=args.model_type, num_heads=args.heads,
                         trans_window=args.trans_window, window=args.window, force=args.force,
                         atol=args.atol, calibration_text=args.text,
                         eval_tokens=args.tokens, int8=args.int8, full=args.full,
                         window_graph=args.window_graph,
                         allow_degraded=args.allow_degraded, form=args.form)
    def work() -> int:
        inputs = check_inputs(opts)         # a user's mistake fails before TensorFlow loads
        import_tf(verbose=args.debug)
        out = export_checkpoint(opts, progress, inputs)
        if not args.quiet:
            print(str(out))
        return 0

    return run_command(PROG, work, debug=args.debug, interrupted="interrupted; nothing was written",
                       unchanged="nothing was written", internal_errors=True)

if __name__ == "__main__":
    sys.exit(main())
