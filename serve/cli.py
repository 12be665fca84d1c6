"""mof-serve: an OpenAI-compatible HTTP server for a mof bundle (the [serve] extra)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.cli_common import add_precision_flags, run_command

from .config import POSITIVE, SETTINGS, ServeConfig, flag

PROG = "mof-serve"


def build_parser() -> argparse.ArgumentParser:
    """The flags, one per ServeConfig field (config.py: its help, how it parses, its group), plus
    --int8/--int4, --api-key-file, the Ray flags and the logging ones."""
    p = argparse.ArgumentParser(
        prog=PROG, argument_default=argparse.SUPPRESS,
        description="Serve a mof bundle over the OpenAI API (POST /v1/chat/completions, /v1/completions; "
                    "GET /v1/models, /health, /metrics; POST /tokenize, /detokenize) and a chat page at /. "
                    "Many conversations are decoded together, one graph call per token; a follow-up turn "
                    "continues its conversation's cached state.",
        epilog="Open http://127.0.0.1:8000/ in a browser to chat, or call it with the openai client: "
               "OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='KEY'). Give the API key with "
               "--api-key-file or the MOF_API_KEY environment variable to keep it out of `ps`.")
    groups = {"server": p}
    for f in SETTINGS.values():
        m = f.metadata
        if f.name == "precision":
            add_precision_flags(p, "run")                 # --precision, and --int8 / --int4 for short
            continue
        where = groups.get(m["group"]) or groups.setdefault(m["group"], p.add_argument_group(m["group"]))
        if f.name == "api_key":
            where = where.add_mutually_exclusive_group()
            where.add_argument("--api-key-file", metavar="FILE", type=Path,
                               help="read the API key from FILE's first line")
        kw = dict(dest=f.name, type=_arg_type(m["parse"]), help=_help(f))
        if f.default is False:                            # a switch: the flag alone turns it on
            kw = dict(dest=f.name, action="store_true", default=argparse.SUPPRESS, help=_help(f))
        if m["metavar"]:
            kw["metavar"] = m["metavar"]
        if m["repeat"]:
            kw["action"] = "append"
        if getattr(m["parse"], "choices", None):
            kw["choices"] = m["parse"].choices
        where.add_argument(flag(f.name), **kw)
    r = p.add_argument_group("Ray Serve (the [ray] extra)")
    r.add_argument("--ray", action="store_true",
                   help="run the engines as Ray Serve replicas behind one HTTP ingress (docs/serving.md)")
    r.add_argument("--replicas", type=_arg_type(POSITIVE), metavar="N", help="engine replicas (default 1)")
    r.add_argument("--autoscale", metavar="MIN:MAX", type=_bounds,
                   help="let Ray Serve scale the engine replicas between MIN and MAX")
    r.add_argument("--ray-address", metavar="ADDR",
                   help="join this Ray cluster (e.g. 'auto' after `ray start --head`; default: a local Ray)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                   help="server log level (default info)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _arg_type(parse):
    """A ServeConfig parser as an argparse type (its ValueError becomes argparse's one-line error)."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _help(f) -> str:
    text = f.metadata["help"]
    if "default" in text:
        return text
    default = f"{f.default:g}" if isinstance(f.default, float) else f.default
    return f"{text} (default {default})"


def _read_key(path: Path) -> str:
    from mof.runtime.errors import MofError
    try:
        with open(path, encoding="utf-8") as f:
            key = f.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as e:
        raise MofError(f"--api-key-file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not key:
        raise MofError(f"--api-key-file {path}: its first line is empty")
    return key


def _bounds(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, got {text!r}") from None
    if not 0 <= lo <= hi or hi < 1:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX and MAX >= 1, got {text}")
    return lo, hi


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    ray_args = {k: args.pop(k) for k in ("ray", "replicas", "autoscale", "ray_address") if k in args}
    if ray_args and not ray_args.get("ray"):
        parser.error("--replicas, --autoscale and --ray-address go with --ray")
    if "replicas" in ray_args and "autoscale" in ray_args:
        parser.error("--replicas and --autoscale exclude each other")

    def run() -> int:
        try:
            import uvicorn
            from .app import create_app
        except ImportError as e:
            from mof.runtime.errors import MofError
            raise MofError(f"mof-serve needs the [serve] extra: pip install 'mof[serve]' ({e.name} is missing)")
        level = args.pop("log_level", "info")
        args.pop("debug", None)
        key_file = args.pop("api_key_file", None)
        if key_file is not None:
            args["api_key"] = _read_key(key_file)
        elif "api_key" not in args and os.environ.get("MOF_API_KEY"):
            args["api_key"] = os.environ["MOF_API_KEY"]
        if "cors_origins" in args:
            args["cors_origins"] = tuple(args["cors_origins"])
        config = ServeConfig(**{k: v for k, v in args.items() if k in SETTINGS})
        _check(config)
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if ray_args:
            return _run_ray(config, ray_args)
        # uvicorn drains on SIGTERM / Ctrl-C, then re-raises the signal under the handler it found:
        # for SIGTERM that is this no-op, so a drained server exits 0 (Ctrl-C still exits 130)
        signal.signal(signal.SIGTERM, lambda *_: None)
        app = create_app(config)
        from .shutdown import DrainingServer
        # uvicorn's own cut-off (timeout_graceful_shutdown) is a safety net: the drain has ended
        # every request by then (shutdown.py)
        DrainingServer(uvicorn.Config(app, host=config.host, port=config.port, log_level=level,
                                      timeout_graceful_shutdown=5), app.state.server, config.drain_seconds).run()
        return 0

    return run_command(PROG, run, debug="debug" in args)


def _run_ray(config: ServeConfig, ray_args: dict) -> int:
    """Start (or join) Ray, deploy the app, serve until SIGTERM / Ctrl-C, then shut the app down."""
    try:
        import ray
        from ray import serve
        from .ray_app import build
    except ImportError as e:
        from mof.runtime.errors import MofError
        raise MofError(f"--ray needs the [ray] extra: pip install 'mof[ray]' ({e.name} is missing)")
    import threading
    ray.init(address=ray_args.get("ray_address"), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": config.host, "port": config.port})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve.run(build(config, ray_args.get("replicas", 1), ray_args.get("autoscale")), name="mof", route_prefix="/")
        from .app import page_url
        url = page_url(config.host, config.port)
        print(f"{PROG}: ready with Ray Serve: chat at {url}, the OpenAI API at {url}v1", file=sys.stderr, flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def _check(config: ServeConfig) -> None:
    """What can be checked before the server starts: the bundle exists, the state folder is usable."""
    from mof.runtime.bundle import read_manifest
    from mof.runtime.bundle_default import DEFAULT_BUNDLE
    from mof.runtime.errors import MofError
    from mof.runtime.model import check_environment
    read_manifest(config.model or DEFAULT_BUNDLE)            # one line if it is not a bundle
    check_environment(config.model or DEFAULT_BUNDLE, config.precision, config.provider)   # provider, onnxruntime
    if config.state_dir is not None and config.state_dir.exists() and not config.state_dir.is_dir():
        raise MofError(f"--state-dir {config.state_dir} is not a folder")


if __name__ == "__main__":
    raise SystemExit(main())
