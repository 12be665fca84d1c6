"""GET /health, /metrics, /v1/models and /v1/models/{id}: what the server serves and how busy it is.
/health and /metrics stay open without the API key (probes and scrapers)."""

from __future__ import annotations

import inspect

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .http_common import check_key
from .metrics import CONTENT_TYPE_LATEST

router = APIRouter()


@router.get("/health")
async def health(request: Request):
    server = request.app.state.server
    if server.info is None:
        status = "error" if server.load_error else "loading"
        return JSONResponse({"status": status, "detail": server.load_error}, status_code=503)
    info = server.info
    status = server.backend.status()
    if inspect.isawaitable(status):                  # Ray: gathered from the replicas
        status = await status
    checked = {"self_check": info.self_check} if info.self_check is not None else {}
    return {"status": "ok", "model": server.model_id, "precision": info.precision, "mode": info.mode,
            "refill_every": info.refill_every, "max_queue": server.config.max_queue, **checked, **status}


@router.get("/metrics")
async def metrics(request: Request):
    server = request.app.state.server
    replicas = getattr(server.backend, "replica_metrics", None)
    if replicas is not None:          # Ray: the ingress's request counts, then the engines' own, gathered
        return Response(server.metrics.render_requests() + await replicas(), media_type=CONTENT_TYPE_LATEST)
    return Response(server.metrics.render(getattr(server.backend, "cache", None)), media_type=CONTENT_TYPE_LATEST)


def _card(server) -> dict:
    return {"id": server.model_id, "object": "model", "created": server.created, "owned_by": "mof"}


@router.get("/v1/models")
async def models(request: Request):
    server = request.app.state.server
    check_key(request, server.config.api_key)
    return {"object": "list", "data": [_card(server)]}


@router.get("/v1/models/{name:path}")
async def one_model(name: str, request: Request):
    server = request.app.state.server
    check_key(request, server.config.api_key)
    server.check_model(name)
    return _card(server)
