"""POST /tokenize and /detokenize (llama-server's names and shapes): the model's own vocabulary,
one token per character; a character the vocabulary lacks is its unknown token."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from .http_common import check_key, read_body
from .protocol import ApiError, parse

router = APIRouter()


class TokenizeBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    content: str
    with_pieces: bool = False           # [{"id", "piece"}] instead of ids
    model: Optional[str] = None


class DetokenizeBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    tokens: list[int] = Field(max_length=1 << 20)
    model: Optional[str] = None


async def _parsed(request: Request, kind):
    server = request.app.state.server
    check_key(request, server.config.api_key)
    body = parse(await read_body(request, server.config.max_body_bytes), kind)
    if body.model is not None:
        server.check_model(body.model)
    return server, body, server.ready().vocab


@router.post("/tokenize")
async def tokenize(request: Request):
    server, body, vocab = await _parsed(request, TokenizeBody)
    ids = vocab.encode(body.content)
    if body.with_pieces:
        return {"tokens": [{"id": i, "piece": c} for i, c in zip(ids, body.content)]}
    return {"tokens": ids}


@router.post("/detokenize")
async def detokenize(request: Request):
    server, body, vocab = await _parsed(request, DetokenizeBody)
    bad = next((i for i, t in enumerate(body.tokens) if not 0 <= t < vocab.size), None)
    if bad is not None:
        raise ApiError(400, f"tokens.{bad}: {body.tokens[bad]} is outside the vocabulary [0, {vocab.size})",
                       param=f"tokens.{bad}", code="invalid_value")
    return {"content": vocab.decode(body.tokens)}
