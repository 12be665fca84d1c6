"""mof-run: continue a prompt or chat with a T6 bundle on the CPU — no TensorFlow."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional, Sequence

from .cli_common import number, run_command

PROG = "mof-run"


def build_parser() -> argparse.ArgumentParser:
    from .bundle_default import DEFAULT_BUNDLE
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Generate text with a Xiaothink T6 bundle on the CPU (onnxruntime only). "
                    "With --prompt: continue the text and exit. Without: chat, one line per turn "
                    "(from the terminal or piped stdin); [CLEAN] clears the history, Ctrl-C stops "
                    "a reply, Ctrl-D exits.",
        epilog=f"Default model: the small demo T6 shipped with mof ({DEFAULT_BUNDLE.name}), trained "
               "on Tang and Song poems. Sampling defaults follow xiaothink's chat: temperature "
               "0.68, top-p 0.8, repetition penalty 1.2.")
    p.add_argument("--model", metavar="BUNDLE", type=Path, default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the shipped demo model)")
    p.add_argument("--int8", action="store_true", help="use the bundle's int8 graphs")
    p.add_argument("--mode", choices=("stream", "exact"),
                   help="stream: recurrent state, constant cost per token; exact: re-read the last W "
                        "characters per token, as xiaothink does (default: the bundle's measured "
                        "recommendation)")
    p.add_argument("--prompt", metavar="TEXT", help="continue TEXT (raw, no template) and exit")
    p.add_argument("--form", choices=("chat", "instruct", "pretrain", "raw"), default="chat",
                   help="chat template (xiaothink's QianyanModel.chat forms; default chat)")
    s = p.add_argument_group("sampling")
    s.add_argument("--temperature", type=number(float, lambda v: v >= 0, "a number >= 0"),
                   default=0.68, help="0 = greedy (default 0.68)")
    s.add_argument("--top-k", type=number(int, lambda v: v >= 0, "an integer >= 0"), default=0,
                   help="keep the k likeliest tokens; 0 = off (default)")
    s.add_argument("--top-p", type=number(float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
                   default=0.8, help="nucleus sampling; 1 = off (default 0.8)")
    s.add_argument("--min-p", type=number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
                   default=0.0, help="drop tokens below min-p x the top probability (default 0)")
    s.add_argument("--repetition-penalty", type=number(float, lambda v: v > 0, "a number > 0"),
                   default=1.2, help="1 = off (default 1.2, xiaothink's)")
    s.add_argument("--penalty-mode", choices=("reference", "sign-aware"), default="reference",
                   help="reference: logit /= penalty (raises negative logits, as xiaothink); "
                        "sign-aware: always lowers")
    s.add_argument("--ban", metavar="CHARS", action="append", default=[],
                   help="characters never to produce (repeatable; each character of CHARS is banned)")
    s.add_argument("--stop", metavar="TEXT", action="append", default=[],
                   help="stop before TEXT (repeatable; added to the template's stops)")
    s.add_argument("--max-tokens", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="characters to generate at most (default 200 with --prompt, 2048 in chat)")
    s.add_argument("--seed", type=number(int, lambda v: v >= 0, "an integer >= 0"),
                   help="same seed -> same text (default: random)")
    p.add_argument("--refill-every", metavar="R", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="stream mode: every R tokens re-read the last W-R+1 characters with the "
                        "reference's own semantics; 1 gives exact mode's tokens, larger is cheaper and "
                        "drifts more (default: the bundle's measured recommendation)")
    r = p.add_argument_group("runtime")
    r.add_argument("--threads", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    r.add_argument("--window", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="characters re-read per token in exact mode (default: the bundle's)")
    r.add_argument("--save-state", metavar="FILE", type=Path,
                   help="after each turn, save the conversation (history + recurrent state) to FILE")
    r.add_argument("--load-state", metavar="FILE", type=Path,
                   help="resume the conversation saved in FILE")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _stats_line(gen, mode: str, precision: str) -> str:
    st = gen.stats
    return (f"[{st.generated_tokens} tokens, prefill {st.prompt_tokens} tok at "
            f"{st.prefill_tokens_per_s:.0f} tok/s, decode {st.decode_tokens_per_s:.1f} tok/s, "
            f"mode {mode}, {precision}]")


def _stream_out(gen, one_line: bool = False) -> None:
    """Write pieces as they come; ``one_line`` writes newlines inside a reply as the two
    characters \\n (as the chat template encodes the user's), so piped output keeps one
    line per turn."""
    for piece in gen:
        sys.stdout.write(piece.replace("\n", "\\n") if one_line else piece)
        sys.stdout.flush()


def run(args) -> int:
    from .errors import MofError
    from .model import Model
    from .sampling import SamplingConfig
    from .session import ChatSession

    model = Model.load(args.model, int8=args.int8, threads=args.threads)
    if args.window:
        model.config = dataclasses.replace(model.config, window=args.window)
    mode = args.mode or model.recommended_mode
    if args.refill_every is not None and mode != "stream":
        raise MofError("--refill-every applies to stream mode; add --mode stream")
    refill = args.refill_every or model.recommended_refill_every
    if refill > model.config.window:
        raise MofError(f"--refill-every must be at most the window W = {model.config.window}")
    why = "chosen" if args.mode or args.refill_every else "the bundle's recommendation"
    decoding = f"stream mode, refill every {refill}" if mode == "stream" else "exact mode"
    ban = tuple(ch for chars in args.ban for ch in chars)
    max_tokens = args.max_tokens or (200 if args.prompt is not None else 2048)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                              penalty_mode=args.penalty_mode, ban=ban, stop=tuple(args.stop),
                              max_tokens=max_tokens, seed=args.seed)
    interactive = sys.stdin.isatty() and args.prompt is None
    print(f"{PROG}: {model.bundle_dir.name}, {decoding} ({why}), {model.precision}", file=sys.stderr)

    if args.prompt is not None:
        session = ChatSession(model, sampling, mode, form="raw", refill_every=refill)
        gen = session.continue_text(args.prompt)
        _stream_out(gen)
        sys.stdout.write("\n")
        print(_stats_line(gen, mode, model.precision), file=sys.stderr)
        return 0

    session = ChatSession(model, sampling, mode, form=args.form, refill_every=refill)
    if args.load_state:
        session.load(args.load_state)
        if interactive:
            print(f"{PROG}: resumed the conversation in {args.load_state}", file=sys.stderr)
    if interactive:
        print(f"{PROG}: chat ({args.form}); [CLEAN] clears the history, Ctrl-C stops a reply, "
              "Ctrl-D exits", file=sys.stderr)
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            if interactive:
                print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return 130
        if not line.strip():
            continue
        if line.strip() == "[CLEAN]":
            session.clear()
            print(f"{PROG}: history cleared", file=sys.stderr)
            continue
        gen = session.turn(line)
        try:
            _stream_out(gen, one_line=not interactive)
            session.finish(gen)
        except KeyboardInterrupt:
            session.finish(gen, interrupted=True)
            sys.stdout.write(" [stopped]")
        sys.stdout.write("\n")
        sys.stdout.flush()
        if interactive:
            print(_stats_line(gen, mode, model.precision), file=sys.stderr)
        if args.save_state:
            session.save(args.save_state)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: run(args), debug=args.debug, broken_pipe_ok=True)

if __name__ == "__main__":
    sys.exit(main())
