"""POST /v1/chat/completions and /v1/completions: a parsed body becomes a Job; the engine's events
become one JSON response, or SSE chunks ending with ``data: [DONE]``.

Every response carries ``usage``, mof's ``mof`` object (mode, refill_every, refills) and
``timings`` (queue, prompt and decode milliseconds, decode tokens/s, cached tokens: llama-server's
idea). A client that goes away — a closed stream, or a non-streaming request whose connection
closes — cancels its rows at the next tick (HTTP 499 in the request counter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from .engine import Event
from .http_common import SSE_DONE, ClientWatch, check_key, read_body, sse
from .protocol import ApiError, ChatBody, CompletionBody, chat_job, completion_job, parse

router = APIRouter()
log = logging.getLogger("mof.serve")

CLIENT_GONE = object()          # put on a request's event queue when its client disconnects


async def _accept(request: Request, kind: type):
    """What both endpoints do first: the key, the body parsed, the model named, the model loaded.
    Returns (server, body, the loaded model's ModelInfo)."""
    server = request.app.state.server
    check_key(request, server.config.api_key)
    body = parse(await read_body(request, server.config.max_body_bytes), kind)
    server.check_model(body.model)
    return server, body, server.ready()


@router.post("/v1/chat/completions")
async def chat(request: Request):
    server, body, info = await _accept(request, ChatBody)
    return await respond(request, chat_job(body, server.config.form or info.form, server.config), chat=True)


@router.post("/v1/completions")
async def completions(request: Request):
    server, body, _ = await _accept(request, CompletionBody)
    return await respond(request, completion_job(body, server.config), chat=False)


def usage_of(usages: list) -> dict:
    u0 = usages[0]
    completion = sum(u.completion_tokens for u in usages)
    return {"prompt_tokens": u0.prompt_tokens, "completion_tokens": completion,
            "total_tokens": u0.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": u0.cached_tokens}}


def timings_of(usages: list) -> dict:
    """One choice's timings; for n choices decoded together, the longest times and the summed tokens."""
    if len(usages) == 1:
        return usages[0].timings()
    out = usages[0].timings()
    for key in ("queue_ms", "prompt_ms", "decode_ms"):
        out[key] = max(u.timings()[key] for u in usages)
    out["completion_tokens"] = sum(u.completion_tokens for u in usages)
    after_first = sum(max(0, u.completion_tokens - 1) for u in usages)
    out["decode_tokens_per_second"] = round(after_first / (out["decode_ms"] / 1000), 2) \
        if after_first and out["decode_ms"] > 0 else None
    return out


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


async def respond(request: Request, job, chat: bool):
    server = request.app.state.server
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def sink(event: Event) -> None:
        with contextlib.suppress(RuntimeError):           # the loop is gone: nobody listens
            loop.call_soon_threadsafe(queue.put_nowait, event)

    watch = ClientWatch(request)
    try:
        ticket = await watch.unless_gone(server.backend.submit(job, sink))   # waits while queued
        if ticket is None:
            return Response(status_code=499)
        head = {"id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24],
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": server.model_id,
                "system_fingerprint": f"mof-{server.info.precision}"}
        extension = {"mode": ticket.mode, "refill_every": ticket.refill_every}
        if getattr(ticket, "replica", None):
            extension["replica"] = ticket.replica
        if job.stream:
            watch.stop()                    # the streaming response listens to the connection itself
            return StreamingResponse(_stream(ticket, queue, job, head, chat, extension),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        def gone() -> None:
            ticket.cancel()
            queue.put_nowait(CLIENT_GONE)
        watch.on_gone(gone)
        return await _whole(ticket, queue, job, head, chat, extension)
    finally:
        watch.stop()


async def _whole(ticket, queue, job, head: dict, chat: bool, extension: dict):
    texts, entries, usages, finish = [""] * job.n, [[] for _ in range(job.n)], [None] * job.n, [None] * job.n
    pending = job.n
    try:
        while pending:
            ev = await queue.get()
            if ev is CLIENT_GONE:
                return Response(status_code=499)
            if ev.kind == "error":
                raise _event_error(ev)
            if ev.kind == "text":
                texts[ev.choice] += ev.text
                entries[ev.choice] += ev.logprobs
            else:
                usages[ev.choice], finish[ev.choice] = ev.usage, ev.finish_reason
                pending -= 1
    except BaseException:
        ticket.cancel()
        raise
    extension["refills"] = sum(u.refills for u in usages)
    tail = {"usage": usage_of(usages), "timings": timings_of(usages), "mof": extension}
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": texts[i]},
                    "logprobs": {"content": _chat_logprobs(entries[i])} if job.top_logprobs is not None else None,
                    "finish_reason": finish[i]} for i in range(job.n)]
        return {**head, "object": "chat.completion", "choices": choices, **tail}
    choices = [{"index": i, "text": texts[i], "finish_reason": finish[i],
                "logprobs": _completion_logprobs(entries[i], len(job.prompt)) if job.top_logprobs is not None
                else None} for i in range(job.n)]
    return {**head, "choices": choices, **tail}


def _event_error(ev: Event) -> ApiError:
    """An engine's "error" event as the client's error: 503 (retry: the server stopped), else 500."""
    return ApiError(ev.status, ev.message, code="generation_failed", retry_after=1 if ev.status == 503 else None)


async def _stream(ticket, queue, job, head: dict, chat: bool, extension: dict):
    """The SSE body: every way it ends — done, an error event from the engine, a failure here —
    ends with ``data: [DONE]`` (an error event first)."""
    try:
        async for chunk in _chunks(queue, job, head, chat, extension):
            yield chunk
    except Exception as e:          # a bug while rendering: say so in the stream, and end it properly
        log.error("a stream failed", exc_info=e)
        yield sse({"error": ApiError(500, f"the stream failed: {type(e).__name__}: {e}",
                                     code="generation_failed").body()["error"]})
        yield SSE_DONE
    finally:
        ticket.cancel()          # a client gone mid-stream frees its rows at the next tick


async def _chunks(queue, job, head: dict, chat: bool, extension: dict):
    usages = [None] * job.n
    offsets = [len(job.prompt)] * job.n
    with_usage = {"usage": None} if job.include_usage else {}
    pending = job.n
    if chat:
        for i in range(job.n):
            yield sse({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                            "logprobs": None, "finish_reason": None}], **with_usage})
    while pending:
        ev = await queue.get()
        if ev.kind == "error":          # e.g. the drain time ran out: say so, and end the stream cleanly
            yield sse({"error": _event_error(ev).body()["error"]})
            yield SSE_DONE
            return
        if ev.kind == "text":
            lp = None
            if job.top_logprobs is not None:
                lp = ({"content": _chat_logprobs(ev.logprobs)} if chat
                      else _completion_logprobs(ev.logprobs, offsets[ev.choice]))
            offsets[ev.choice] += len(ev.text)
            choice = ({"index": ev.choice, "delta": {"content": ev.text}} if chat
                      else {"index": ev.choice, "text": ev.text})
            yield sse({**head, "choices": [{**choice, "logprobs": lp, "finish_reason": None}], **with_usage})
        else:
            usages[ev.choice] = ev.usage
            pending -= 1
            choice = {"index": ev.choice, "delta": {}} if chat else {"index": ev.choice, "text": ""}
            yield sse({**head, "choices": [{**choice, "logprobs": None, "finish_reason": ev.finish_reason}],
                       "timings": ev.usage.timings(), **with_usage})
    if job.include_usage:
        extension["refills"] = sum(u.refills for u in usages)
        yield sse({**head, "choices": [], "usage": usage_of(usages), "timings": timings_of(usages),
                   "mof": extension})
    yield SSE_DONE
