"""What the command-line tools share: argparse number types, the sampling flags (their defaults
are SamplingConfig's), --provider, UTF-8 console output, and one-line errors and warnings."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
import warnings
from typing import Callable, Optional, Sequence

from .errors import MofError


def number(kind, check: Callable, what: str):
    """An argparse type: ``kind(text)`` that must pass ``check``; errors say what was expected."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not check(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v
    return parse


def utf8_stdio() -> None:
    """Read and write UTF-8 on stdin/stdout/stderr whatever the locale says, unless the user chose an
    encoding (PYTHONIOENCODING). Chinese text through a pipe or a file would otherwise use the
    ANSI code page on Windows (cp1252 cannot encode it: UnicodeEncodeError) or ASCII under a
    C/POSIX locale. A Windows console already gets Unicode from Python (PEP 528)."""
    if os.environ.get("PYTHONIOENCODING"):
        return
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        enc = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if enc != "utf8" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(encoding="utf-8", errors="replace")
            except (ValueError, OSError):   # a stream already read from, or closed
                pass


def add_precision_flags(parser: argparse.ArgumentParser, verb: str = "use") -> None:
    """--precision {fp32,int8,int4}, with --int8 and --int4 as its short forms, into ``dest``
    "precision". Unset, it is left out of the namespace when the parser's argument_default is
    SUPPRESS (a config dataclass supplies the default), else it is None (= fp32)."""
    from .contract import INT4, INT8, PRECISIONS
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--precision", choices=PRECISIONS,
                   help=f"which of the bundle's graphs to {verb}: fp32 (default), int8 or int4")
    g.add_argument("--int8", dest="precision", action="store_const", const=INT8,
                   help="same as --precision int8")
    g.add_argument("--int4", dest="precision", action="store_const", const=INT4,
                   help="same as --precision int4")


def add_provider_flag(parser) -> None:
    """--provider NAME[:key=value,...] into ``dest`` "provider" (unset: the CPU provider)."""
    parser.add_argument("--provider", metavar="NAME",
                        help="onnxruntime execution provider to run on: cpu (default), openvino, dml, cuda, "
                             "coreml, ... or its full name; one the installed onnxruntime has "
                             "(docs/embedding.md); NAME:key=value,... passes provider options")


def add_native_flag(parser, stock: str = "--no-native runs the stock graphs") -> None:
    """--native / --no-native into ``dest`` "native" (unset: None, Model.load's choice)."""
    parser.add_argument("--native", action=argparse.BooleanOptionalAction, default=None,
                        help="the bundle's fused int8 graphs with mof's native ops (docs/native.md): by "
                             f"default where the library builds here; --native requires them, {stock}")


def checked_provider(provider: Optional[str]) -> Optional[str]:
    """``provider`` as given, once this onnxruntime is known to have it (else a MofError, one line)."""
    if provider is not None:
        from .providers import resolve
        resolve(provider)
    return provider


# The sampling flags: SamplingConfig field -> (flag options, help). Defaults are SamplingConfig's;
# argparse leaves an unset flag out (SUPPRESS), so the dataclass's default applies.
def _sampling_flags() -> dict[str, tuple[dict, str]]:
    from .sampling import PENALTY_MODES
    return {
        "temperature": (dict(type=number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")),
                        "0 = greedy"),
        "top_k": (dict(type=number(int, lambda v: v >= 0, "an integer >= 0")),
                  "keep the k likeliest tokens; 0 = off"),
        "top_p": (dict(type=number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")),
                  "nucleus sampling; 1 = off"),
        "min_p": (dict(type=number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")),
                  "drop tokens below min-p x the top probability; 0 = off"),
        "repetition_penalty": (dict(type=number(float, lambda v: 0 < v < float("inf"), "a number > 0")),
                               "1 = off"),
        "penalty_mode": (dict(choices=PENALTY_MODES),
                         "reference: logit /= penalty (raises negative logits, as xiaothink); "
                         "sign-aware: always lowers"),
        "ban": (dict(metavar="CHARS", action="append"),
                "characters never to produce (repeatable; each character of CHARS is banned)"),
        "stop": (dict(metavar="TEXT", action="append"),
                 "stop before TEXT (repeatable; added to the template's stops)"),
        "max_tokens": (dict(type=number(int, lambda v: v >= 1, "an integer >= 1")),
                       "characters to generate at most, per reply"),
        "seed": (dict(type=number(int, lambda v: v >= 0, "an integer >= 0")), "same seed -> same text"),
    }


def add_sampling_arguments(parser, names: Optional[Sequence[str]] = None) -> None:
    """Add --temperature, --top-p, ... (``names``: a subset of SamplingConfig's fields)."""
    from .sampling import SamplingConfig
    flags = _sampling_flags()
    defaults = {f.name: f.default for f in dataclasses.fields(SamplingConfig)}
    for name in names or flags:
        options, text = flags[name]
        default = defaults[name]
        if default is None:
            text += " (default: random)" if name == "seed" else ""
        elif default != ():
            text += f" (default {default})"
        parser.add_argument("--" + name.replace("_", "-"), default=argparse.SUPPRESS, help=text,
                            **options)


def sampling_from_args(args: argparse.Namespace):
    """The SamplingConfig the sampling flags describe; SamplingConfig's defaults for unset ones."""
    from .sampling import SamplingConfig
    given = {name: getattr(args, name) for name in _sampling_flags() if hasattr(args, name)}
    if "ban" in given:
        given["ban"] = tuple(ch for chars in given["ban"] for ch in chars)
    if "stop" in given:
        given["stop"] = tuple(given["stop"])
    return SamplingConfig(**given)


def run_command(prog: str, work: Callable[[], int], *, debug: bool, interrupted: str = "",
                unchanged: str = "", broken_pipe_ok: bool = False, internal_errors: bool = False) -> int:
    """Run ``work``; a user mistake becomes one line on stderr and a non-zero exit code.

    ``interrupted``: what to say on Ctrl-C (else a bare newline); ``unchanged``: appended to
    disk errors (e.g. "nothing was written"); ``internal_errors``: report any other exception
    in one line too (its traceback with --debug). Warnings mof gives (an onnxruntime not known to
    reproduce a bundle's figures) are one line on stderr too."""
    try:
        with warnings.catch_warnings():
            _one_line_warnings(prog)
            return work()
    except MofError as e:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}" if interrupted else "", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if broken_pipe_ok:
            return 0
        raise
    except OSError as e:
        if debug:
            traceback.print_exc()
        where = f" ({e.filename})" if e.filename else ""
        tail = f"; {unchanged}" if unchanged else ""
        print(f"{prog}: error: {e.strerror or e}{where}{tail}", file=sys.stderr)
        return 1
    except Exception as e:
        if debug or not internal_errors:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e}; rerun with --debug for the "
              "traceback", file=sys.stderr)
        return 1


def _one_line_warnings(prog: str) -> None:
    from .errors import OnnxruntimeWarning
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, OnnxruntimeWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)
    warnings.showwarning = show
