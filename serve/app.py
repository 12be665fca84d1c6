"""The HTTP app: the OpenAI API's chat and completions endpoints over the engine, and a chat page.

    app = create_app(ServeConfig(model=Path("t6.mof")))      # uvicorn.run(app, ...) serves it

The model loads in the background: /health answers 503 until it is ready. Every error is
``{"error": {"message", "type", "param", "code"}}`` with its HTTP status. The endpoints live in
``routes_*.py``, one module per group; this module holds what they share (``Server``) and wires
them together with the error handlers and middleware (request counting, CORS when asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Optional

import mof
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mof.runtime.bundle_default import DEFAULT_BUNDLE
from mof.runtime.decoding import Decoding
from mof.runtime.errors import MofError
from mof.runtime.model import Model

from . import routes_completions, routes_info, routes_page, routes_tokens
from .backend import LocalBackend, ModelInfo
from .config import ServeConfig
from .http_common import OpenRequests, RequestGuard
from .metrics import Metrics
from .openapi import build_openapi
from .protocol import ApiError

log = logging.getLogger("mof.serve")


def model_id(config: ServeConfig) -> str:
    """The name clients use in ``model``: --model-name, else the bundle folder's name without .mof."""
    path = Path(config.model or DEFAULT_BUNDLE)
    return config.model_name or (path.name[:-4] if path.name.endswith(".mof") else path.name)


def page_url(host: str, port: int) -> str:
    """The chat page's address as a browser on this machine opens it: a wildcard host (0.0.0.0,
    ::) is reached through the loopback; an IPv6 address goes in brackets."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class Server:
    """What the app holds: the config, the backend that decodes, what it said of the model."""

    def __init__(self, config: ServeConfig, model: Optional[Model] = None, backend=None):
        self.config = config
        self.metrics = Metrics()
        self.requests = OpenRequests()          # the HTTP requests in flight (what a drain waits for)
        self.model_id = model_id(config)
        self.created = int(time.time())
        self.backend = backend if backend is not None else LocalBackend(config, self.metrics, model)
        self.info: Optional[ModelInfo] = None
        self.load_error: Optional[str] = None
        self.port: Optional[int] = None         # the port listened on, once mof-serve's server says (listening)
        self._announced = threading.Lock()      # the ready line is printed once: taken by whoever prints it

    def load(self) -> None:
        """Bring the backend up (in a thread: /health answers 503 meanwhile)."""
        try:
            self.info = self.backend.load()
        except (MofError, OSError) as e:
            self.load_error = str(e)
            log.error("mof-serve: cannot load the model: %s", e)
        except Exception as e:       # e.g. a Ray backend whose replicas cannot start: say so, don't hang
            self.load_error = f"{type(e).__name__}: {e}"
            log.exception("mof-serve: the backend did not start")
        self._announce()

    def listening(self, port: int) -> None:
        """mof-serve's server is bound to ``port`` (the one --port 0 chose)."""
        self.port = port
        self._announce()

    def _announce(self) -> None:
        """Once the model is loaded and the port known (whichever comes last): the ready line, with
        the chat page's address a user opens."""
        info = self.info
        if info is None or self.port is None or not self._announced.acquire(blocking=False):
            return
        url = page_url(self.config.host, self.port)
        how = Decoding(info.mode, info.refill_every).describe()
        log.info("mof-serve: %s ready (%s, %s): chat at %s, the OpenAI API at %sv1",
                 self.model_id, info.precision, how, url, url)

    def ready(self) -> ModelInfo:
        if self.info is None:
            raise ApiError(503, self.load_error or "the model is still loading", code="loading",
                           retry_after=None if self.load_error else 2)
        return self.info

    def check_model(self, name: str) -> None:
        if name != self.model_id:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {self.model_id!r}",
                           param="model", code="model_not_found")

    async def drain(self, seconds: float) -> None:
        """Shutting down: new requests (on connections opened before) get a 503; open requests get
        ``seconds`` to finish. Then what is left is ended, with one log line: the engine ends its
        rows (each stream gets an error event and ``[DONE]``, a waiting request a 503), and any
        request still open a second later — whatever it waits for — is cancelled and answered the
        same way by ``RequestGuard``."""
        self.requests.draining = True
        await self._settle(seconds)
        if not self.requests:
            return
        log.warning("mof-serve: --drain-seconds %g ran out: ending %d open request(s) with an error",
                    seconds, len(self.requests))
        await asyncio.to_thread(self.backend.stop)
        await self._settle(1.0)
        if self.requests:
            self.requests.abort()
            await self._settle(1.0)

    async def _settle(self, seconds: float) -> None:
        """Wait until no request is open, for ``seconds`` at most."""
        deadline = time.monotonic() + seconds
        while self.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def create_app(config: ServeConfig = ServeConfig(), model: Optional[Model] = None, backend=None) -> FastAPI:
    """The app for ``config`` (``model``: an already loaded Model to serve instead of loading one;
    ``backend``: where requests are decoded, default a LocalBackend in this process)."""
    server = Server(config, model, backend)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=server.load, name="mof-load", daemon=True).start()
        yield
        await asyncio.to_thread(server.backend.stop)

    app = FastAPI(title="mof-serve", version=mof.__version__, lifespan=lifespan,
                  description="An OpenAI-compatible server for the Xiaothink MoF models (T6, T7) mof exports.")
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):     # 404, 405 (with its Allow)
        err = ApiError(e.status_code, str(e.detail), code="not_found" if e.status_code == 404 else None)
        return JSONResponse(err.body(), status_code=e.status_code, headers=dict(e.headers or {}))

    modules = (routes_completions, routes_info, routes_tokens, routes_page)
    for module in modules:
        app.include_router(module.router)
    app.mount("/static", routes_page.static_files(), name="static")
    spec: dict = {}

    def openapi() -> dict:                   # the schema as the server behaves (openapi.py)
        if not spec:
            spec.update(build_openapi(app, config, server.model_id))
        return spec
    app.openapi = openapi
    # the routes whose templates label the request counter: each module's own, and the app's (the
    # schema, the docs, /static); FastAPI wraps an included router in a route of its own
    routes = [r for module in modules for r in module.router.routes] + \
        [r for r in app.router.routes if getattr(r, "path_format", None)]
    app.add_middleware(RequestGuard, metrics=server.metrics, requests=server.requests, routes=routes)
    if config.cors_origins:                  # browser front-ends on these origins may call the API
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["Retry-After"],
                           max_age=600)
    return app
