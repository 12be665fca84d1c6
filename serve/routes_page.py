"""GET /: the chat page (serve/static: plain HTML, CSS and JavaScript shipped in the package; no
build step, nothing fetched from elsewhere). It talks to /v1/chat/completions like any client.
GET /favicon.ico: the icon a browser asks for by itself (the page links static/favicon.svg; both
drawn by scripts/make_favicon.py)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
async def favicon():
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
