"""The HTTP app: the OpenAI API's chat and completions endpoints over the engine.

    app = create_app(ServeConfig(model=Path("t6.mof")))      # uvicorn.run(app, ...) serves it

The model loads in the background: /health answers 503 until it is ready. Every error is
``{"error": {"message", "type", "param", "code"}}`` with its HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mof.runtime.bundle_default import DEFAULT_BUNDLE
from mof.runtime.errors import MofError
from mof.runtime.model import Model

from .backend import LocalBackend, ModelInfo
from .config import ServeConfig
from .engine import Event
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .protocol import ApiError, ChatBody, CompletionBody, chat_job, completion_job, parse

log = logging.getLogger("mof.serve")


def model_id(config: ServeConfig) -> str:
    """The name clients use in ``model``: --model-name, else the bundle folder's name without .mof."""
    path = Path(config.model or DEFAULT_BUNDLE)
    return config.model_name or (path.name[:-4] if path.name.endswith(".mof") else path.name)


class Server:
    """What the app holds: the config, the backend that decodes, what it said of the model."""

    def __init__(self, config: ServeConfig, model: Optional[Model] = None, backend=None):
        self.config = config
        self.metrics = Metrics()
        self.model_id = model_id(config)
        self.created = int(time.time())
        self.backend = backend if backend is not None else LocalBackend(config, self.metrics, model)
        self.info: Optional[ModelInfo] = None
        self.load_error: Optional[str] = None

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

    def ready(self) -> ModelInfo:
        if self.info is None:
            raise ApiError(503, self.load_error or "the model is still loading", code="loading",
                           retry_after=None if self.load_error else 2)
        return self.info


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is larger than {limit} bytes", code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


def _usage(usages: list) -> dict:
    u0 = usages[0]
    completion = sum(u.completion_tokens for u in usages)
    return {"prompt_tokens": u0.prompt_tokens, "completion_tokens": completion,
            "total_tokens": u0.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": u0.cached_tokens}}


def _chat_logprobs(entries: list) -> list:
    def one(tok, lp):
        return {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8"))}
    return [{**one(tok, lp), "top_logprobs": [one(t, v) for t, v in alts]} for tok, lp, alts in entries]


def _completion_logprobs(entries: list, offset: int) -> dict:
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for tok, lp, alts in entries:
        out["tokens"].append(tok)
        out["token_logprobs"].append(lp)
        out["top_logprobs"].append({t: v for t, v in alts})
        out["text_offset"].append(offset)
        offset += len(tok)
    return out


class CountRequests:
    """Counts /v1/* responses by endpoint and status (a plain ASGI middleware: Starlette's
    BaseHTTPMiddleware would put every streamed chunk through an extra task and memory stream)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)

        async def counting_send(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(scope["path"], str(message["status"])).inc()
            await send(message)
        await self.app(scope, receive, counting_send)


def create_app(config: ServeConfig = ServeConfig(), model: Optional[Model] = None, backend=None) -> FastAPI:
    """The app for ``config`` (``model``: an already loaded Model to serve instead of loading one;
    ``backend``: where requests are decoded, default a LocalBackend in this process)."""
    server = Server(config, model, backend)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=server.load, name="mof-load", daemon=True).start()
        yield
        await asyncio.to_thread(server.backend.stop)

    app = FastAPI(title="mof-serve", version="0.1.0", lifespan=lifespan,
                  description="An OpenAI-compatible server for Xiaothink T6 models exported by mof.")
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        err = ApiError(e.status_code, str(e.detail), code="not_found" if e.status_code == 404 else None)
        return JSONResponse(err.body(), status_code=e.status_code)

    app.add_middleware(CountRequests, metrics=server.metrics)

    def check_key(request: Request) -> None:
        if config.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise ApiError(401, "a valid API key is needed: Authorization: Bearer KEY", code="invalid_api_key")

    def check_model(name: str) -> None:
        if name != server.model_id:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {server.model_id!r}",
                           param="model", code="model_not_found")

    def model_card() -> dict:
        return {"id": server.model_id, "object": "model", "created": server.created, "owned_by": "mof"}

    @app.get("/health")
    async def health():
        if server.info is None:
            status = "error" if server.load_error else "loading"
            return JSONResponse({"status": status, "detail": server.load_error}, status_code=503)
        return {"status": "ok", "model": server.model_id, **server.backend.status()}

    @app.get("/metrics")
    async def metrics():
        return Response(server.metrics.render(getattr(server.backend, "cache", None)), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str, request: Request):
        check_key(request)
        check_model(name)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        check_key(request)
        body = parse(await _body(request, config.max_body_bytes), ChatBody)
        check_model(body.model)
        info = server.ready()
        return await _respond(request, chat_job(body, config.form or info.form, config), chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        check_key(request)
        body = parse(await _body(request, config.max_body_bytes), CompletionBody)
        check_model(body.model)
        server.ready()
        return await _respond(request, completion_job(body, config), chat=False)

    async def _respond(request: Request, job, chat: bool):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:
            with contextlib.suppress(RuntimeError):           # the loop is gone: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, event)

        ticket = await server.backend.submit(job, sink)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        head = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": server.model_id,
                "system_fingerprint": f"mof-{server.info.precision}"}
        extension = {"mode": ticket.mode, "refill_every": ticket.refill_every}
        if getattr(ticket, "replica", None):
            extension["replica"] = ticket.replica
        if job.stream:
            return StreamingResponse(_stream(ticket, queue, job, head, chat, extension),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        texts, entries, usages, finish = [""] * job.n, [[] for _ in range(job.n)], [None] * job.n, [None] * job.n
        pending = job.n
        try:
            while pending:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        ticket.cancel()
                        return Response(status_code=499)
                    continue
                if ev.kind == "error":
                    raise ApiError(503, ev.message, code="generation_failed", retry_after=1)
                if ev.kind == "text":
                    texts[ev.choice] += ev.text
                    entries[ev.choice] += ev.logprobs
                else:
                    usages[ev.choice], finish[ev.choice] = ev.usage, ev.finish_reason
                    pending -= 1
        except BaseException:
            ticket.cancel()
            raise
        usage = _usage(usages)
        extension["refills"] = sum(u.refills for u in usages)
        if chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": texts[i]},
                        "logprobs": {"content": _chat_logprobs(entries[i])} if job.top_logprobs is not None else None,
                        "finish_reason": finish[i]} for i in range(job.n)]
            return {**head, "object": "chat.completion", "choices": choices, "usage": usage, "mof": extension}
        choices = [{"index": i, "text": texts[i], "finish_reason": finish[i],
                    "logprobs": _completion_logprobs(entries[i], len(job.prompt)) if job.top_logprobs is not None
                    else None} for i in range(job.n)]
        return {**head, "choices": choices, "usage": usage, "mof": extension}

    async def _stream(ticket, queue, job, head, chat: bool, extension: dict):
        usages = [None] * job.n
        offsets = [len(job.prompt)] * job.n
        with_usage = {"usage": None} if job.include_usage else {}
        pending = job.n
        try:
            if chat:
                for i in range(job.n):
                    yield _sse({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                                     "logprobs": None, "finish_reason": None}], **with_usage})
            while pending:
                ev = await queue.get()
                if ev.kind == "error":
                    yield _sse({"error": ApiError(503, ev.message, code="generation_failed").body()["error"]})
                    return
                if ev.kind == "text":
                    lp = None
                    if job.top_logprobs is not None:
                        if chat:
                            lp = {"content": _chat_logprobs(ev.logprobs)}
                        else:
                            lp = _completion_logprobs(ev.logprobs, offsets[ev.choice])
                    offsets[ev.choice] += len(ev.text)
                    choice = ({"index": ev.choice, "delta": {"content": ev.text}} if chat
                              else {"index": ev.choice, "text": ev.text})
                    yield _sse({**head, "choices": [{**choice, "logprobs": lp, "finish_reason": None}],
                                **with_usage})
                else:
                    usages[ev.choice] = ev.usage
                    pending -= 1
                    choice = {"index": ev.choice, "delta": {}} if chat else {"index": ev.choice, "text": ""}
                    yield _sse({**head, "choices": [{**choice, "logprobs": None, "finish_reason": ev.finish_reason}],
                                **with_usage})
            if job.include_usage:
                extension["refills"] = sum(u.refills for u in usages)
                yield _sse({**head, "choices": [], "usage": _usage(usages), "mof": extension})
            yield b"data: [DONE]\n\n"
        finally:
            ticket.cancel()          # a client gone mid-stream frees its rows at the next tick

    return app
