"""What every endpoint shares: reading a bounded body, the API key, SSE lines, noticing that a
client went away, and counting responses for /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from typing import Callable, Optional

from fastapi import Request

from .metrics import Metrics
from .protocol import ApiError


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
