"""mof-run: continue a prompt or chat with a T6 or T7 bundle on the CPU — no TensorFlow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .cli_common import (add_native_flag, add_precision_flags, add_provider_flag, add_sampling_arguments, number,
                         run_command, sampling_from_args, utf8_stdio)
from .errors import MofError

PROG = "mof-run"


def build_parser() -> argparse.ArgumentParser:
    from .bundle_default import DEFAULT_BUNDLE
    from .chat import FORMS
    from .decoding import MODES
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Generate text with a Xiaothink T6 or T7 bundle on the CPU (onnxruntime only). "
                    "With --prompt: one turn, then exit. Without: a conversation. In a terminal the "
                    "line can be edited (Left/Right, Home/End, Up/Down recall earlier lines, kept "
                    "across runs), a paste of several lines or \"\"\" ... \"\"\" is one message, and "
                    "commands change the session: /help, /show, /set NAME VALUE, /mode, /refill, "
                    "/clear (or [CLEAN]), /save FILE, /load FILE, /bye. Piped stdin: one line per "
                    "turn (commands and \"\"\" work too). Ctrl-C stops a reply; Ctrl-D (Windows: "
                    "Ctrl-Z Enter) or /bye leaves.",
        epilog=f"Default model: the small demo T6 shipped with mof ({DEFAULT_BUNDLE.name}), trained "
               "on Chinese dialogues in xiaothink's chat form and on Tang and Song poems (form chat: "
               "it answers; --form raw continues your text). Sampling defaults follow xiaothink's chat.")
    p.add_argument("--model", metavar="BUNDLE", type=Path, default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the shipped demo model)")
    add_precision_flags(p)
    p.add_argument("--mode", choices=MODES,
                   help="stream: recurrent state, constant cost per token; exact: re-read the last W "
                        "characters per token, as xiaothink does (default: the bundle's measured "
                        "recommendation)")
    p.add_argument("--prompt", metavar="TEXT",
                   help="one turn: the reply to TEXT (in the raw form: its continuation, newlines "
                        "kept) goes to stdout, then exit")
    p.add_argument("--form", choices=FORMS,
                   help="prompt template, as xiaothink's QianyanModel.chat builds them; raw = the "
                        "text itself (default: the form the bundle was trained for)")
    add_sampling_arguments(p.add_argument_group("sampling"))
    p.add_argument("--refill-every", metavar="R", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="stream mode: every R tokens re-read the last W-R+1 characters with the "
                        "reference's own semantics; 1 gives exact mode's tokens, larger is cheaper and "
                        "drifts more (default: the bundle's measured recommendation)")
    r = p.add_argument_group("runtime")
    r.add_argument("--threads", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    add_provider_flag(r)
    add_native_flag(r)
    r.add_argument("--window", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="characters re-read per token in exact mode (default: the bundle's)")
    r.add_argument("--save-state", metavar="FILE", type=Path,
                   help="after each turn, save the conversation (history + recurrent state) to FILE")
    r.add_argument("--load-state", metavar="FILE", type=Path,
                   help="resume the conversation saved in FILE (with --prompt: its next turn)")
    r.add_argument("--transcript", metavar="FILE", type=Path,
                   help="append every turn to FILE as a JSON line (user text, reply, mode, "
                        "precision, sampling); commands that change the session are recorded too")
    from .line_reader import default_history_file
    r.add_argument("--history", metavar="FILE", type=Path, default=default_history_file(),
                   help="where a terminal chat keeps the lines you typed, for Up/Down "
                        "(default: %(default)s; created readable by you alone)")
    r.add_argument("--no-history", action="store_true", help="keep no history file")
    r.add_argument("--self-check", action="store_true",
                   help="first recompute the bundle's reference logits on this machine (mof-check) and "
                        "stop if they differ from the export's")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args) -> int:
    from .chat_loop import ChatLoop, stats_line, stream_out
    from .decoding import CLI, resolve_decoding
    from .model import Model
    from .chat_session import ChatSession
    from .transcript import open_transcript

    if args.transcript is not None and args.transcript.is_dir():
        raise MofError(f"--transcript {args.transcript} is a directory")
    model = Model.load(args.model, precision=args.precision, threads=args.threads, window=args.window,
                       providers=args.provider, self_check=args.self_check, native=args.native)
    if model.self_check_result is not None:
        print(f"{PROG}: self-check: {model.self_check_result.line()}", file=sys.stderr)
    decoding = resolve_decoding(model, args.mode, args.refill_every, CLI)
    form = args.form or model.form
    if form == "raw" and (args.save_state or args.load_state):
        raise MofError("the raw form keeps no history, so there is no conversation to save or "
                       "resume; pass --form chat, instruct or pretrain")
    session = ChatSession(model, sampling_from_args(args), decoding.mode, form=form,
                          refill_every=decoding.refill_every)
    interactive = sys.stdin.isatty() and args.prompt is None
    print(f"{PROG}: {model.bundle_dir.name}, {decoding.describe()} ({decoding.why}), {form} form, "
          f"{model.precision}, kernels: {model.kernels}", file=sys.stderr)
    if model.kernels == "stock" and model.kernels_note:
        print(f"{PROG}: note: {model.kernels_note}", file=sys.stderr)
    warning = model.manifest.accuracy_warning(model.precision)
    if warning:
        print(f"{PROG}: note: {warning}", file=sys.stderr)
    if args.load_state:
        session.load(args.load_state)
        if interactive:
            print(f"{PROG}: resumed the conversation in {args.load_state}", file=sys.stderr)
    transcript = open_transcript(args.transcript)
    try:
        if args.prompt is not None:
            # raw: the text itself, newlines and all; other forms: the user's turn in the template
            gen = session.continue_text(args.prompt) if form == "raw" else session.turn(args.prompt)
            stream_out(gen)
            session.finish(gen)
            sys.stdout.write("\n")
            print(stats_line(gen, model.precision), file=sys.stderr)
            if transcript:
                transcript.turn(session, args.prompt, gen)
            if args.save_state:
                session.save(args.save_state)
            return 0
        from .line_reader import PipeReader, open_reader
        reader = open_reader(None if args.no_history else args.history) if interactive else PipeReader()
        if interactive:
            print(f"{PROG}: {banner(form, reader.eof_key)}", file=sys.stderr)
        return ChatLoop(session, reader, interactive, prog=PROG, eof_key=reader.eof_key,
                        transcript=transcript, save_state=args.save_state).run()
    finally:
        if transcript:
            transcript.close()


def banner(form: str, eof_key: str) -> str:
    """The first words of a terminal chat, true to the form: raw keeps no history."""
    what = ("raw form: each message is continued on its own (no history)" if form == "raw" else
            f"chat in the {form} form (history kept; /clear or [CLEAN] forgets it)")
    return (f'{what}; /help lists the commands, """ opens and closes multi-line input, Ctrl-C stops '
            f"a reply, /bye or {eof_key} leaves")


def main(argv: Optional[Sequence[str]] = None) -> int:
    utf8_stdio()
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: run(args), debug=args.debug, broken_pipe_ok=True)

if __name__ == "__main__":
    sys.exit(main())
