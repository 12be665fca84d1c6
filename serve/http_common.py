"""What every endpoint shares: reading a bounded body, the API key, SSE lines, noticing that a
client went away, and counting responses for /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Callable, Optional

from fastapi import Request
from starlette.routing import Match

from .metrics import Metrics
from .protocol import ApiError

log = logging.getLogger("mof.serve")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or ApiError 413 as soon as it is known to exceed ``limit`` bytes."""
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


def check_key(request: Request, api_key: Optional[str]) -> None:
    """ApiError 401 unless the request carries ``Authorization: Bearer <api_key>`` (constant time)."""
    if api_key is None:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise ApiError(401, "a valid API key is needed: Authorization: Bearer KEY", code="invalid_api_key")


def sse(obj) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class ClientWatch:
    """Notices the client closing its connection while a non-streaming reply is computed: the
    request's events never pause while its row decodes, so waiting for a quiet moment to ask
    would never come. Reads the ASGI ``receive`` channel (the body is read already: the next
    message is ``http.disconnect``). Stop it before a streaming response takes the channel over."""

    def __init__(self, request: Request):
        self.gone = asyncio.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._task = asyncio.ensure_future(self._watch(request.receive))

    async def _watch(self, receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()
        for callback in self._callbacks:
            callback()

    def on_gone(self, callback: Callable[[], None]) -> None:
        if self.gone.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    async def unless_gone(self, coro):
        """Await ``coro``; None if the client leaves first (``coro`` is cancelled then)."""
        task = asyncio.ensure_future(coro)
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ApiError):
            await task
        return None

    def stop(self) -> None:
        self._task.cancel()


class OpenRequests:
    """The HTTP requests in flight, and whether the server is draining (shutting down): what the
    drain waits for, and what it ends when its time runs out (``abort``)."""

    def __init__(self) -> None:
        self.draining = False
        self._open: dict = {}              # task -> [aborted?]

    def __len__(self) -> int:
        return len(self._open)

    def add(self, task) -> list:
        """Track ``task`` (a request being handled); returns its flag: [True] once aborted."""
        flag = self._open[task] = [False]
        return flag

    def discard(self, task) -> None:
        self._open.pop(task, None)

    def abort(self) -> int:
        """Cancel every open request; each is answered by ``RequestGuard`` (a 503, or an error event
        and ``[DONE]`` in a stream it had started). Returns how many."""
        for task, flag in list(self._open.items()):
            flag[0] = True
            task.cancel()
        return len(self._open)


ROUTE_UNMATCHED = "unmatched"      # the endpoint label of every path no route matches (a 404)


def route_label(scope, routes=()) -> str:
    """The route template a request matches (``/v1/models/{name}``, ``/static/{path}``), never the
    raw path: a bounded label set however many paths clients invent. A route that matches the
    path but not the method (a 405) names it too; no route at all is ``unmatched``."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path_format", None) or ROUTE_UNMATCHED
        if match is Match.PARTIAL and partial is None:
            partial = route
    return getattr(partial, "path_format", None) or ROUTE_UNMATCHED


class _Response:
    """What a request's response has done so far (seen through its ``send``)."""
    status = 0
    started = False
    complete = False
    sse = False                     # text/event-stream: a stream that can still end with an error event


async def _send_error(send, error: ApiError, close: bool = False) -> None:
    body = json.dumps(error.body(), ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Every HTTP request passes here (a plain ASGI middleware: Starlette's BaseHTTPMiddleware
    would put every streamed chunk through an extra task and memory stream):

    - it is counted in ``mof_requests_total`` by route template and status once its response is
      whole; a response the client did not take whole (it went away) is counted 499;
    - an exception before the response started (a bug) is an OpenAI-shaped 500, logged once;
    - while the server drains, a new request (on a connection opened before) gets a 503 with
      Retry-After and ``Connection: close``;
    - when the drain's time runs out, ``OpenRequests.abort`` cancels what is still open: a request
      that had not answered gets a 503, a stream an error event and ``[DONE]``."""

    def __init__(self, app, metrics: Metrics, requests: OpenRequests, routes=()):
        """``routes``: the app's routes (the request counter's labels are their templates)."""
        self.app, self.metrics, self.requests, self.routes = app, metrics, requests, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        label = route_label(dict(scope), self.routes)      # before the routers add to the scope
        if self.requests.draining:
            await _send_error(send, ApiError(503, "the server is shutting down", code="unavailable",
                                             retry_after=5), close=True)
            return self._count(label, 503)
        response = _Response()

        async def tracked(message):
            if message["type"] == "http.response.start":
                response.started, response.status = True, message["status"]
                response.sse = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                                   for k, v in message.get("headers", ()))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                response.complete = True
        task = asyncio.ensure_future(self.app(scope, receive, tracked))
        aborted = self.requests.add(task)
        try:
            await task
        except asyncio.CancelledError:
            if not aborted[0]:
                raise                                   # this request's own task was cancelled: pass it on
            await self._abort(send, response)
        except Exception as e:
            log.error("%s %s failed", scope.get("method"), label, exc_info=e)
            if not response.started:
                await _send_error(send, ApiError(500, f"internal error: {type(e).__name__}", code="internal_error"))
                response.started = response.complete = True
                response.status = 500
        finally:
            self.requests.discard(task)
            self._count(label, response.status if response.complete else 499)

    async def _abort(self, send, response: _Response) -> None:
        """Answer a request the drain cut off (its client may not read any more: bounded)."""
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            if not response.started:
                await asyncio.wait_for(_send_error(send, ApiError(503, "the server shut down before answering",
                                                                  code="unavailable", retry_after=5), close=True), 1)
                response.started = response.complete = True
                response.status = 503
            elif response.sse and not response.complete:
                error = ApiError(503, "the server shut down before the reply ended", code="generation_failed")
                await asyncio.wait_for(send({"type": "http.response.body", "body": sse(error.body()) + SSE_DONE}), 1)
                response.complete = True

    def _count(self, label: str, status: int) -> None:
        self.metrics.requests.labels(label, str(status)).inc()
