"""ServeConfig: every setting of a server, with its default (the one place defaults live) and how
it is read from text — the one definition both ``mof-serve``'s flags (cli.py: ``--max-batch`` for
``max_batch``) and the Ray app's ``args`` (ray_app.py: ``max_batch: 32`` in a config file) are
built from. ``parse_setting(name, value)`` turns a command-line string or a YAML scalar into the
field's value, or raises ValueError saying what was expected."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

from mof.runtime.chat import FORMS
from mof.runtime.contract import PRECISIONS


def _number(kind: type, ok: Callable, what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise ValueError(f"expected {what}, got {text}")
        return value
    parse.__name__ = what
    return parse


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return text
    parse.choices = options
    return parse


def _switch(value) -> bool:
    """A yes/no setting: a flag on the command line, true/false in a YAML config."""
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("true", "yes", "1"):
        return True
    if str(value).strip().lower() in ("false", "no", "0"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


_switch.__name__ = "true or false"
POSITIVE = _number(int, lambda v: v >= 1, "an integer >= 1")
COUNT = _number(int, lambda v: v >= 0, "an integer >= 0")
NON_NEGATIVE = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
PORT = _number(int, lambda v: 0 <= v < 65536, "a port number")


def setting(default, help: str, parse: Callable[[str], Any] = str, metavar: Optional[str] = None,
            group: str = "server", flag: Optional[str] = None, repeat: bool = False):
    """A ServeConfig field with what its flag needs: ``help`` (the default is appended unless it
    says it), ``parse`` (text -> value; ValueError if bad), ``group`` (of --help), ``flag`` (else
    --name-with-dashes), ``repeat`` (a tuple field given once per value)."""
    return field(default=default, metadata={"help": help, "parse": parse, "metavar": metavar, "group": group,
                                            "flag": flag, "repeat": repeat})


@dataclass(frozen=True)
class ServeConfig:
    model: Optional[Path] = setting(    # bundle directory; None = the demo shipped with mof
        None, "bundle directory (default: the shipped demo model)", Path, "BUNDLE")
    precision: str = setting(           # which graphs to run: fp32, int8 or int4
        "fp32", "which of the bundle's graphs to run", _choice(PRECISIONS))
    host: str = setting(                # address to listen on (loopback: this machine only)
        "127.0.0.1", "address to listen on (default 127.0.0.1: this machine only)")
    port: int = setting(8000, "TCP port", PORT)                      # TCP port
    form: Optional[str] = setting(      # chat messages' template (runtime/chat.py); None = the bundle's
        None, "how chat messages are rendered: xiaothink's templates, byte for byte, or raw (the last user "
              "message, continued) (default: the form the bundle records)", _choice(FORMS))
    api_key: Optional[str] = setting(   # if set, /v1/*, /tokenize and /detokenize need "Authorization: Bearer KEY"
        None, "require 'Authorization: Bearer KEY' on /v1/*, /tokenize and /detokenize (visible to other "
              "users in `ps`: prefer --api-key-file or $MOF_API_KEY; default: $MOF_API_KEY, else none)",
        metavar="KEY")
    model_name: Optional[str] = setting(    # the id /v1/models lists; None = the bundle folder's stem
        None, "the model id clients pass (default: the bundle folder's name without .mof)", metavar="NAME")
    cors_origins: tuple[str, ...] = setting(   # browser origins allowed to call the API (CORS); () = none
        (), "let browser pages from ORIGIN (e.g. http://localhost:3000) call the API; repeatable, '*' for any "
            "(default: none)", metavar="ORIGIN", flag="--cors-origin", repeat=True)
    max_batch: int = setting(           # conversations decoded together, one row each per graph call
        32, "conversations decoded together per graph call", POSITIVE, "N", "capacity")
    max_conversations: int = setting(   # rows admitted at once (decoding + waiting for a batch slot)
        256, "rows (conversations) held at once, decoding or waiting for a batch slot; more requests queue",
        POSITIVE, "N", "capacity")
    max_queue: int = setting(           # requests waiting for admission beyond that; more -> 429
        512, "requests that wait, first come first served, while every slot is taken; beyond that 429 "
             "(0 = refuse at once)", COUNT, "N", "capacity")
    queue_timeout: float = setting(     # seconds a request may wait for admission; then 429
        120.0, "seconds a request may wait in the queue before a 429", NON_NEGATIVE, "S", "capacity")
    max_window_reads: int = setting(    # prompts, refills and exact windows read per tick at most
        4, "prompts, refills and exact windows read per tick at most; the others wait a tick while every "
           "one-token step goes on", POSITIVE, "N", "capacity")
    threads: Optional[int] = setting(   # onnxruntime intra-op threads; None = one per core
        None, "onnxruntime intra-op threads (default: one per core)", POSITIVE, "N", "capacity")
    provider: Optional[str] = setting(  # onnxruntime execution provider; None = the CPU's
        None, "onnxruntime execution provider to run on: cpu (default), openvino, dml, cuda, coreml, ... or "
              "its full name; one the installed onnxruntime has (docs/embedding.md); NAME:key=value,... "
              "passes provider options", metavar="NAME", group="capacity")
    self_check: bool = setting(         # recompute the bundle's reference logits before serving (mof-check)
        False, "before serving, recompute the bundle's reference logits on this machine (mof-check); if "
               "they differ from the export's the model is not served and /health says why; the verdict "
               "is in /health (default: off)", _switch, group="capacity")
    max_tokens_limit: int = setting(    # the most max_tokens a request may ask for
        4096, "the largest max_tokens a request may ask", POSITIVE, "N", "capacity")
    max_n: int = setting(               # the most choices (n) per request
        8, "the most choices (n) one request may ask", POSITIVE, "N", "capacity")
    max_prompt_chars: int = setting(    # rendered prompts above this get 400 (context_length_exceeded)
        65536, "longest rendered prompt, characters", POSITIVE, "N", "capacity")
    max_body_bytes: int = setting(      # request bodies above this get 413
        1 << 20, "largest request body, bytes", POSITIVE, "N", "capacity")
    cache_mb: float = setting(          # state cache bound, MiB of states and texts (0 = no cache)
        256.0, "memory for cached conversation states, MiB (0 = off)", NON_NEGATIVE, "MB", "state cache")
    state_dir: Optional[Path] = setting(    # keep the state cache in this folder across restarts
        None, "also keep the cached states in DIR, read back at the next start (default: in memory only)", Path, "DIR", "state cache")
    drain_seconds: float = setting(     # on SIGTERM / Ctrl-C: time open requests get to finish
        30.0, "on Ctrl-C / SIGTERM, time open requests get to finish; then each ends with an error",
        NON_NEGATIVE, "S")


SETTINGS = {f.name: f for f in fields(ServeConfig)}


def flag(name: str) -> str:
    """Setting ``name``'s mof-serve flag (``--max-n`` for ``max_n``): what an error message names."""
    return SETTINGS[name].metadata["flag"] or "--" + name.replace("_", "-")


def parse_setting(name: str, value: Any) -> Any:
    """``value`` (a command-line string or a YAML scalar / list) as field ``name``'s value."""
    f = SETTINGS[name]
    parse = f.metadata["parse"]
    if value is None:
        return None
    if f.metadata["repeat"]:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return tuple(parse(str(v).strip()) for v in items if str(v).strip())
    return parse(str(value))
