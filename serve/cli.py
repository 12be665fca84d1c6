"""mof-serve: an OpenAI-compatible HTTP server for a mof bundle (the [serve] extra)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.cli_common import add_precision_flags, add_provider_flag, number, run_command

from .config import ServeConfig

PROG = "mof-serve"


def build_parser() -> argparse.ArgumentParser:
    from mof.runtime.chat import FORMS
    d = ServeConfig()
    positive = number(int, lambda v: v >= 1, "an integer >= 1")
    p = argparse.ArgumentParser(
        prog=PROG, argument_default=argparse.SUPPRESS,
        description="Serve a mof bundle over the OpenAI API (POST /v1/chat/completions, /v1/completions; "
                    "GET /v1/models, /health, /metrics). Many conversations are decoded together, one "
                    "graph call per token; a follow-up turn continues its conversation's cached state.",
        epilog="Call it with the openai client: OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='KEY'). "
               "The API key can also come from the MOF_API_KEY environment variable.")
    p.add_argument("--model", metavar="BUNDLE", type=Path, help="bundle directory (default: the shipped demo model)")
    add_precision_flags(p, "run")
    p.add_argument("--form", choices=FORMS,
                   help="how chat messages are rendered: xiaothink's templates, byte for byte, or raw "
                        "(the last user message, continued) (default: the form the bundle records)")
    p.add_argument("--host", help=f"address to listen on (default {d.host}: this machine only)")
    p.add_argument("--port", type=number(int, lambda v: 0 <= v < 65536, "a port number"),
                   help=f"TCP port (default {d.port})")
    p.add_argument("--api-key", metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1/* (default: $MOF_API_KEY, else none)")
    p.add_argument("--model-name", metavar="NAME",
                   help="the model id clients pass (default: the bundle folder's name without .mof)")
    e = p.add_argument_group("capacity")
    e.add_argument("--max-batch", type=positive, metavar="N",
                   help=f"conversations decoded together per graph call (default {d.max_batch})")
    e.add_argument("--max-conversations", type=positive, metavar="N",
                   help=f"requests held at once, decoding or waiting; more get 429 (default {d.max_conversations})")
    e.add_argument("--max-window-reads", type=positive, metavar="N",
                   help="prompts, refills and exact windows read per tick at most; the others wait a "
                        f"tick while every one-token step goes on (default {d.max_window_reads})")
    e.add_argument("--threads", type=positive, help="onnxruntime intra-op threads (default: one per core)")
    add_provider_flag(e)
    e.add_argument("--max-tokens-limit", type=positive, metavar="N",
                   help=f"the largest max_tokens a request may ask (default {d.max_tokens_limit})")
    e.add_argument("--max-prompt-chars", type=positive, metavar="N",
                   help=f"longest rendered prompt (default {d.max_prompt_chars})")
    e.add_argument("--max-body-bytes", type=positive, metavar="N",
                   help=f"largest request body (default {d.max_body_bytes})")
    c = p.add_argument_group("state cache")
    c.add_argument("--cache-mb", type=number(float, lambda v: v >= 0, "a number >= 0"), metavar="MB",
                   help=f"memory for cached conversation states, MiB (default {d.cache_mb:g}; 0 = off)")
    c.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="also keep the cached states in DIR, read back at the next start")
    r = p.add_argument_group("Ray Serve (the [ray] extra)")
    r.add_argument("--ray", action="store_true",
                   help="run the engines as Ray Serve replicas behind one HTTP ingress (docs/serving.md)")
    r.add_argument("--replicas", type=positive, metavar="N", help="engine replicas (default 1)")
    r.add_argument("--autoscale", metavar="MIN:MAX", type=_bounds,
                   help="let Ray Serve scale the engine replicas between MIN and MAX")
    r.add_argument("--ray-address", metavar="ADDR",
                   help="join this Ray cluster (e.g. 'auto' after `ray start --head`; default: a local Ray)")
    p.add_argument("--drain-seconds", type=number(float, lambda v: v >= 0, "a number >= 0"),
                   help=f"on Ctrl-C / SIGTERM, time open requests get to finish (default {d.drain_seconds:g})")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                   help="server log level (default info)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


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
        if "api_key" not in args and os.environ.get("MOF_API_KEY"):
            args["api_key"] = os.environ["MOF_API_KEY"]
        fields = {f.name for f in dataclasses.fields(ServeConfig)}
        config = ServeConfig(**{k: v for k, v in args.items() if k in fields})
        _check(config)
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if ray_args:
            return _run_ray(config, ray_args)
        # uvicorn drains on SIGTERM / Ctrl-C, then re-raises the signal under the handler it found:
        # for SIGTERM that is this no-op, so a drained server exits 0 (Ctrl-C still exits 130)
        signal.signal(signal.SIGTERM, lambda *_: None)
        uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=level,
                    timeout_graceful_shutdown=int(config.drain_seconds) or None)
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
        print(f"{PROG}: serving on http://{config.host}:{config.port} with Ray Serve", file=sys.stderr, flush=True)
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
