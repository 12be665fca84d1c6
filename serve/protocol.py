"""The OpenAI API's request bodies as mof reads them, and its error shape.

A body is parsed (JSON, never evaluated) and validated strictly: a field of the wrong type or out
of range is a 400 whose ``param`` names it. Fields that would change what is computed but that mof
cannot honour (tools, logit_bias, frequency/presence penalties, ...) are refused, not ignored;
fields that do not change the tokens (user, metadata, store, ...) are accepted and ignored.

mof's own fields, as extra body fields (``extra_body=`` in the openai client): ``top_k``,
``min_p``, ``repetition_penalty``, ``penalty_mode``, ``mode`` ("stream" or "exact") and
``refill_every`` (stream mode's R, 1 to W; refused with exact mode, as mof-run refuses it: both go
through ``mof.runtime.decoding.resolve_decoding``). Omitted sampling fields take ``SamplingConfig``'s
defaults — xiaothink's chat defaults (temperature 0.68, top_p 0.8, repetition_penalty 1.2), not OpenAI's.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mof.runtime.chat import Conversation
from mof.runtime.decoding import API, Decoding, DecodingError, resolve_decoding
from mof.runtime.errors import MofError
from mof.runtime.sampling import PENALTY_MODES, SamplingConfig

from .config import ServeConfig, flag


class ApiError(Exception):
    """An error the client gets as ``{"error": {"message", "type", "param", "code"}}``."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
             413: "invalid_request_error", 429: "rate_limit_error", 503: "server_error", 500: "server_error"}

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 retry_after: Optional[int] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def headers(self) -> dict:
        out = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        if self.status == 401:
            out["WWW-Authenticate"] = "Bearer"
        return out


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    model: str
    stream: bool = False
    stream_options: Optional["StreamOptions"] = None
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=0, lt=2 ** 32)
    n: int = Field(1, ge=1)
    user: Optional[str] = None             # OpenAI's end-user id: only names the conversation for routing
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, Any]] = None
    # mof's own
    top_k: Optional[int] = Field(None, ge=0)
    min_p: Optional[float] = Field(None, ge=0, lt=1)
    repetition_penalty: Optional[float] = Field(None, gt=0)
    penalty_mode: Optional[Literal[PENALTY_MODES]] = None      # type: ignore[valid-type]
    mode: Optional[Literal["stream", "exact"]] = None
    refill_every: Optional[int] = Field(None, ge=1)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatBody(_Body):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    tools: Optional[list[Any]] = None
    response_format: Optional[dict[str, Any]] = None


class CompletionBody(_Body):
    prompt: Union[str, list[str]]
    logprobs: Optional[int] = Field(None, ge=0, le=5)
    echo: bool = False
    suffix: Optional[str] = None
    best_of: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Job:
    """What one request asks the engine for (``n`` rows), once parsed."""
    prompt: str                           # the text the model continues (the chat form rendered)
    sampling: SamplingConfig              # choice i uses seed + i when seeded
    mode: Optional[str]                   # None: the bundle's recommendation
    refill_every: Optional[int]           # None: the bundle's recommendation
    n: int                                # choices
    top_logprobs: Optional[int]           # None: no logprobs; else how many alternatives per token
    stream: bool
    include_usage: bool
    conversation: str = ""                # names the conversation (routes its turns to one replica)


def decoding_of(model, job: Job) -> Decoding:
    """The request's mode and R, with the bundle's defaults (the model is known only here, where
    the engine runs): a 400 naming the field when they are wrong."""
    try:
        return resolve_decoding(model, job.mode, job.refill_every, API)
    except DecodingError as e:
        raise ApiError(400, str(e), param=e.param, code="invalid_value") from None


def parse(raw: bytes, kind: type[_Body]) -> _Body:
    """A request body -> its model, or ApiError(400) naming the field."""
    try:
        text = raw.decode("utf-8")         # strict: JSON is UTF-8 (an encoded surrogate is not)
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the body is not valid UTF-8: byte {e.start}", code="invalid_json") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:
        raise ApiError(400, "the body nests too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    _check_unicode(data)
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        # the error deepest in what the client sent (of a union's members: the one its value took)
        found = [(_client_path(data, err["loc"], missing=err["type"] == "missing"), err) for err in e.errors()]
        param, err = max(found, key=lambda f: len((f[0] or "").split(".")))
        raise ApiError(400, f"{param}: {err['msg']}" if param else err["msg"], param=param,
                       code="invalid_value") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:        # a lone surrogate (valid JSON text: "\\ud800")
        return False


def _check_unicode(data: Any) -> None:
    """ApiError 400 naming the first string (or key) that is not valid Unicode: a lone surrogate
    could be neither encoded back (a reply, a log line, a cache file's name) nor tokenized honestly.
    Iterative: a body may nest as deep as the JSON parser allows."""
    stack = [([], data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if not _encodable(node):
                where = ".".join(path)
                raise ApiError(400, f"{where}: not valid Unicode (a lone surrogate)", param=where or None,
                               code="invalid_value")
            continue
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in reversed(list(items)):           # reversed: the first is checked first
            if isinstance(key, str) and not _encodable(key):
                where = ".".join(path)
                raise ApiError(400, f"{where + ': ' if where else ''}a key is not valid Unicode (a lone "
                                    "surrogate)", param=where or None, code="invalid_value")
            stack.append((path + [str(key)], value))


def _client_path(data: Any, loc: tuple, missing: bool) -> Optional[str]:
    """A validation error's location as the client wrote it: pydantic's ``loc`` also names the
    union member it tried (``messages.0.content.str``); only keys and indexes found in the body
    are kept (``messages.0.content``), and the field a body lacks (``missing``: the last one)."""
    path, node = [], data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (missing and i == len(loc) - 1 and isinstance(node, dict)):
            continue
        path.append(str(part))
    return ".".join(path) or None


def _refuse(body: _Body, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(body, name, None)
        if value not in (None, 0, 0.0, {}, [], False):
            raise ApiError(400, f"{name} is not supported by mof-serve", param=name, code="unsupported")


def _stops(body: _Body) -> tuple[str, ...]:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4:
        raise ApiError(400, "stop: at most 4 sequences", param="stop", code="invalid_value")
    if any(not s for s in stop):
        raise ApiError(400, "stop: sequences must be non-empty", param="stop", code="invalid_value")
    return tuple(stop)


AFFINITY_CHARS = 32     # a completion prompt's characters that name its conversation


def _job(body: _Body, prompt: str, stops: tuple[str, ...], max_tokens: Optional[int],
         top_logprobs: Optional[int], config: ServeConfig, conversation: str, prompt_param: str) -> Job:
    """``prompt_param``: the field the prompt came from ("prompt", or "messages" for a chat)."""
    if body.n > config.max_n:
        raise ApiError(400, f"n: at most {config.max_n} ({flag('max_n')})", param="n", code="invalid_value")
    if not prompt:
        raise ApiError(400, "the prompt is empty", param=prompt_param, code="invalid_value")
    if len(prompt) > config.max_prompt_chars:
        raise ApiError(400, f"the prompt has {len(prompt)} characters; this server reads at most "
                            f"{config.max_prompt_chars} ({flag('max_prompt_chars')})", param=prompt_param,
                       code="context_length_exceeded")
    if max_tokens is not None and max_tokens > config.max_tokens_limit:
        raise ApiError(400, f"max_tokens: at most {config.max_tokens_limit} ({flag('max_tokens_limit')})",
                       param="max_tokens", code="invalid_value")
    if max_tokens is None:              # the default, within this server's limit too
        max_tokens = min(SamplingConfig().max_tokens, config.max_tokens_limit)
    given = {k: getattr(body, k) for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                          "penalty_mode", "seed") if getattr(body, k) is not None}
    given["max_tokens"] = max_tokens
    try:
        sampling = SamplingConfig(stop=stops, **given)
    except MofError as e:
        raise ApiError(400, str(e), code="invalid_value") from None
    stream_opts = getattr(body, "stream_options", None)
    return Job(prompt=prompt, sampling=sampling, mode=body.mode, refill_every=body.refill_every, n=body.n,
               top_logprobs=top_logprobs, stream=body.stream,
               include_usage=bool(stream_opts and stream_opts.include_usage),
               conversation=f"{body.user or ''}\n{conversation}")


def chat_job(body: ChatBody, form: str, config: ServeConfig) -> Job:
    """Render ``messages`` in the bundle's form (runtime/chat.py: xiaothink's templates, byte for
    byte): user and assistant turns in order, ending with a user turn. System and developer
    messages are not part of xiaothink's templates and are left out. The raw form keeps no
    history: the last user message is the text continued."""
    _refuse(body, ("tools", "frequency_penalty", "presence_penalty", "logit_bias"))
    if body.response_format is not None and body.response_format.get("type") != "text":   # text: plain text, as always
        raise ApiError(400, "response_format: only {\"type\": \"text\"} is supported by mof-serve",
                       param="response_format", code="unsupported")
    turns = [m for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise ApiError(400, "messages must end with a user message", param="messages", code="invalid_value")
    conversation = Conversation(form)
    prompt = ""
    for m in turns:
        if m.role == "user":
            prompt = conversation.prompt(m.text())
        else:
            conversation.add_reply(m.text())
    stops = tuple(conversation.stops) + _stops(body)
    top = (body.top_logprobs or 0) if body.logprobs else None
    if body.top_logprobs and not body.logprobs:
        raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs", code="invalid_value")
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    return _job(body, prompt, stops, max_tokens, top, config, conversation=turns[0].text(),
                prompt_param="messages")


def completion_job(body: CompletionBody, config: ServeConfig) -> Job:
    """A raw continuation of ``prompt`` (one string, or a list holding one)."""
    _refuse(body, ("frequency_penalty", "presence_penalty", "logit_bias", "echo", "suffix"))
    if body.best_of not in (None, 1):
        raise ApiError(400, "best_of is not supported by mof-serve", param="best_of", code="unsupported")
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise ApiError(400, "prompt: one prompt per request", param="prompt", code="invalid_value")
        prompt = prompt[0]
    return _job(body, prompt, _stops(body), body.max_tokens, body.logprobs, config,
                conversation=prompt[:AFFINITY_CHARS], prompt_param="prompt")


_Body.model_rebuild()
ChatBody.model_rebuild()
CompletionBody.model_rebuild()
