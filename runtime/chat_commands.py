"""mof-run's in-session commands (/help, /set, /mode, /save, ...): parsed from a line of input and
applied to a ChatSession. Pure Python, no terminal: the chat loop (chat_loop.py) reads the lines.

A command returns the text to show the user; a mistake raises MofError (the loop prints it and
goes on). Values are checked by the same rules as mof-run's flags (cli_common's argparse types).
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .chat import CLEAN_COMMAND
from .decoding import CHAT, MODES
from .errors import MofError
from .chat_session import ChatSession

# What /set can change: SamplingConfig fields, in the order /show lists them.
SETTABLE = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "penalty_mode",
            "max_tokens", "seed")
RANDOM_SEED_WORDS = ("none", "random")       # /set seed none: fresh randomness per reply

COMMANDS = (                                 # (what is typed, what it does) in /help's table
    ("/help, /?", "this list"),
    ("/show", "model, form, decoding mode, refill period, precision, sampling"),
    ("/set NAME VALUE", f"change sampling for the next replies; NAME is one of {', '.join(SETTABLE)} "
                        "(seed none = random)"),
    ("/mode stream|exact", "decoding mode for the next replies"),
    ("/refill R", "stream mode: refill every R tokens (1 = exact mode's tokens)"),
    (f"/clear, {CLEAN_COMMAND}", "forget the conversation (a new one starts)"),
    ("/save FILE [--force]", "save the conversation (history + recurrent state) to FILE"),
    ("/load FILE", "continue the conversation saved in FILE"),
    ("/bye", "leave (also Ctrl-D at an empty prompt)"),
)


def _help(width: int = 96) -> str:
    """/help's text: the commands in two columns (the second where the longest command ends, its
    lines wrapped at ``width``), then how input works."""
    indent = 2 + max(len(c) for c, _ in COMMANDS) + 2
    rows = [textwrap.fill(what, width, initial_indent="  " + c.ljust(indent - 2),
                          subsequent_indent=" " * indent) for c, what in COMMANDS]
    return "\n".join([
        "commands (a line that starts with / is a command, not sent to the model; a space before the /",
        "sends it):", *rows,
        'multi-line input: a line that starts with """ opens it, a line that ends with """ closes it',
        "(a paste of several lines is one message too); Up/Down recall earlier lines, Left/Right edit;",
        "Ctrl-C stops a reply, or clears the line at the prompt"])


HELP = _help()


@dataclass(frozen=True)
class Outcome:
    text: str = ""              # what to tell the user (stderr); "" = nothing
    leave: bool = False         # /bye
    event: Optional[dict] = None   # what the transcript records ({"event": "clear"}, ...)


def _value_type(name: str) -> Callable[[str], object]:
    from .cli_common import _sampling_flags
    options = _sampling_flags()[name][0]
    if "choices" in options:
        choices = options["choices"]

        def choice(text: str):
            if text not in choices:
                raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
            return text
        return choice
    return options["type"]


def parse_setting(name: str, text: str):
    """(field, value) for ``/set NAME VALUE``: NAME may be spelt with - or _."""
    field = name.replace("-", "_").lower()
    if field not in SETTABLE:
        raise MofError(f"/set {name}: unknown setting; one of {', '.join(SETTABLE)}")
    if field == "seed" and text.lower() in RANDOM_SEED_WORDS:
        return field, None
    try:
        return field, _value_type(field)(text)
    except argparse.ArgumentTypeError as e:
        raise MofError(f"/set {field}: {e}") from None


def show(session: ChatSession) -> str:
    model, s = session.model, session.sampling
    decoding = (f"stream, refill every {session.refill_every}" if session.mode == "stream" else "exact")
    sampling = ", ".join(f"{f}={getattr(s, f)}" for f in SETTABLE)
    extra = [f"{f}={getattr(s, f)}" for f in ("ban", "stop") if getattr(s, f)]
    return (f"model      {model.bundle_dir.name} ({model.config.family.upper()}, {model.bundle_dir})\n"
            f"form       {session.conversation.form}\n"
            f"mode       {decoding}\n"
            f"precision  {model.precision}\n"
            f"sampling   {', '.join([sampling, *extra])}")


def _path_and_force(args: str, usage: str) -> tuple[Path, bool]:
    """FILE [--force]: the rest of the line is the path (spaces allowed)."""
    words = args.split()
    force = "--force" in words
    if force:
        args = " ".join(w for w in words if w != "--force")
    args = args.strip().strip('"')
    if not args:
        raise MofError(f"usage: {usage}")
    return Path(args).expanduser(), force


def _no_history(session: ChatSession, what: str) -> None:
    if session.conversation.form == "raw":
        raise MofError(f"the raw form keeps no history, so there is no conversation to {what}")


def run(line: str, session: ChatSession) -> Outcome:
    """Apply the command ``line`` (it starts with / or is [CLEAN]) to ``session``."""
    line = line.strip()
    if line == CLEAN_COMMAND:
        line = "/clear"
    name, _, args = line[1:].partition(" ")
    name, args = name.lower(), args.strip()
    if name in ("help", "?"):
        return Outcome(HELP)
    if name == "show":
        return Outcome(show(session))
    if name in ("bye", "exit", "quit"):
        return Outcome(leave=True)
    if name == "clear":
        if session.conversation.form == "raw":
            return Outcome("the raw form keeps no history: each message is continued on its own")
        session.clear()
        return Outcome("history cleared", event={"event": "clear"})
    if name == "set":
        words = args.split()
        if len(words) != 2:
            raise MofError(f"usage: /set NAME VALUE, NAME one of {', '.join(SETTABLE)}")
        field, value = parse_setting(*words)
        session.sampling = dataclasses.replace(session.sampling, **{field: value})
        return Outcome(f"{field} = {value}", event={"event": "set", field: value})
    if name == "mode":
        if args not in MODES:
            raise MofError(f"usage: /mode {'|'.join(MODES)}")
        refill = session.refill_every if args == "stream" else None     # stream to stream keeps its R
        decoding = session.set_decoding(args, refill, CHAT)
        return Outcome(f"{decoding.describe()} from the next reply", event={"event": "mode", "mode": args})
    if name == "refill":
        try:
            r = int(args)
        except ValueError:
            raise MofError(f"usage: /refill R, R an integer from 1 to the window W = "
                           f"{session.model.config.window}") from None
        decoding = session.set_decoding(session.mode, r, CHAT)
        return Outcome(f"{decoding.describe()} from the next reply",
                       event={"event": "refill", "refill_every": r})
    if name == "save":
        _no_history(session, "save")
        path, force = _path_and_force(args, "/save FILE [--force]")
        if path.is_dir():
            raise MofError(f"{path} is a directory")
        if path.exists() and not force:
            raise MofError(f"{path} exists; /save {args} --force replaces it")
        size = session.save(path)
        return Outcome(f"conversation saved to {path} ({size:,} bytes)", event={"event": "save", "file": str(path)})
    if name == "load":
        _no_history(session, "load")
        path, _ = _path_and_force(args, "/load FILE")
        if not path.is_file():
            raise MofError(f"{path}: no such file")
        session.load(path)
        return Outcome(f"continuing the conversation saved in {path}", event={"event": "load", "file": str(path)})
    raise MofError(f"unknown command /{name}; /help lists the commands")


def is_command(line: str) -> bool:
    """A line that starts with / (a space before it sends it to the model), or [CLEAN]."""
    return line.startswith("/") or line.strip() == CLEAN_COMMAND
