"""The OpenAPI schema at /openapi.json, as the server behaves: each POST's request body is the
pydantic model the server validates it with (the handlers read and parse bodies themselves, for
the 413 bound and the 400s that name a field, so FastAPI cannot see them), with this server's own
limits (its model's id, --max-tokens-limit, --max-n, --max-prompt-chars); every status an
operation can send, each error as ``{"error": {"message", "type", "param", "code"}}``; /metrics as
Prometheus text; a streamed reply as ``text/event-stream``.

Statuses every operation can send: 500 (a bug: ``RequestGuard``) and 503 (the server is draining;
the model is loading). A client that goes away is counted 499 in the metrics, but nothing is sent.
"""

from __future__ import annotations

import copy

from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from .config import ServeConfig
from .protocol import ChatBody, CompletionBody
from .routes_tokens import DetokenizeBody, TokenizeBody

REF = "#/components/schemas/{model}"
BODIES = {"/v1/chat/completions": ChatBody, "/v1/completions": CompletionBody,
          "/tokenize": TokenizeBody, "/detokenize": DetokenizeBody}

ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
USAGE = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
         "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                        "total_tokens": {"type": "integer"}}}
COMPLETION = {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
              "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                             "created": {"type": "integer"}, "model": {"type": "string"},
                             "choices": {"type": "array", "items": {"type": "object", "required": ["index"]}},
                             "usage": USAGE, "timings": {"type": "object"}, "mof": {"type": "object"}}}
CHUNK = {"type": "object", "required": ["id", "object", "created", "model", "choices"],
         "properties": {"choices": {"type": "array", "items": {"type": "object", "required": ["index"]}}}}
SSE_EVENT = {                  # one server-sent event: data: a chunk, an error, or [DONE] (the last)
    "type": "object", "required": ["data"], "properties": {"data": {"anyOf": [
        {"const": "[DONE]"},
        {"type": "string", "contentMediaType": "application/json",
         "contentSchema": {"anyOf": [CHUNK, ERROR]}}]}}}
MODEL = {"type": "object", "required": ["id", "object", "created", "owned_by"],
         "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                        "owned_by": {"type": "string"}}}
SCHEMAS = {
    "ErrorResponse": ERROR,
    "Completion": COMPLETION,
    "Model": MODEL,
    "ModelList": {"type": "object", "required": ["object", "data"],
                  "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": MODEL}}},
    "Tokens": {"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": {
        "anyOf": [{"type": "integer"}, {"type": "object", "required": ["id", "piece"],
                                        "properties": {"id": {"type": "integer"}, "piece": {"type": "string"}}}]}}}},
    "Text": {"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}},
    "Health": {"type": "object", "required": ["status"], "properties": {
        "status": {"enum": ["ok", "loading", "error"]}, "detail": {"type": ["string", "null"]}}},
}

EXAMPLES = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "你好"}], "max_tokens": 4},
    "/v1/completions": {"prompt": "床前明月光，", "max_tokens": 4},
    "/tokenize": {"content": "床前", "with_pieces": True},
    "/detokenize": {"tokens": [1, 2, 3]},
}

WHY = {
    400: "a malformed body, a field of the wrong type or value (``param`` names it), text that is not "
         "valid Unicode, an unsupported field",
    401: "the server has an API key and the request lacks it (WWW-Authenticate: Bearer)",
    404: "another model than the one served",
    413: "a body over --max-body-bytes",
    429: "the admission queue is full, or the request waited --queue-timeout in it",
    500: "an internal error (a bug, a broken bundle); in a stream already started: an error event, then [DONE]",
    503: "the model is loading or failed to load, the server is shutting down (Retry-After)",
}
STATUSES = {                   # (method, path) -> the statuses it can send besides 200, 500 and 503
    ("post", "/v1/chat/completions"): (400, 401, 404, 413, 429),
    ("post", "/v1/completions"): (400, 401, 404, 413, 429),
    ("post", "/tokenize"): (400, 401, 404, 413),
    ("post", "/detokenize"): (400, 401, 404, 413),
    ("get", "/v1/models"): (401,),
    ("get", "/v1/models/{name}"): (401, 404),
    ("get", "/health"): (),
    ("get", "/metrics"): (),
}
OK = {
    ("post", "/v1/chat/completions"): {"application/json": {"$ref": REF.format(model="Completion")},
                                       "text/event-stream": SSE_EVENT},
    ("post", "/v1/completions"): {"application/json": {"$ref": REF.format(model="Completion")},
                                  "text/event-stream": SSE_EVENT},
    ("post", "/tokenize"): {"application/json": {"$ref": REF.format(model="Tokens")}},
    ("post", "/detokenize"): {"application/json": {"$ref": REF.format(model="Text")}},
    ("get", "/v1/models"): {"application/json": {"$ref": REF.format(model="ModelList")}},
    ("get", "/v1/models/{name}"): {"application/json": {"$ref": REF.format(model="Model")}},
    ("get", "/health"): {"application/json": {"type": "object", "required": ["status"]}},
    ("get", "/metrics"): {"text/plain": {"type": "string"}},
}


def _error(status: int) -> dict:
    out = {"description": WHY[status],
           "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}}
    if status in (429, 503):
        out["headers"] = {"Retry-After": {"description": "seconds to wait before trying again",
                                          "required": status == 429, "schema": {"type": "string"}}}
    if status == 401:
        out["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
    return out


def _responses(key: tuple, keyed: bool) -> dict:
    """``keyed``: the server has an API key (only then can it send a 401)."""
    out = {"200": {"description": "OK", "content": {media: {"schema": schema} for media, schema in OK[key].items()}}}
    for status in sorted(s for s in STATUSES[key] + (500, 503) if keyed or s != 401):
        out[str(status)] = _error(status)
    if key == ("get", "/health"):           # loading / failed: the health shape; draining: the error shape
        out["503"]["content"]["application/json"]["schema"] = {
            "anyOf": [{"$ref": REF.format(model="Health")}, {"$ref": REF.format(model="ErrorResponse")}]}
    return out


def _limits(schemas: dict, config: ServeConfig, model_id: str) -> None:
    """This server's own bounds on the bodies' fields (a value beyond them is a 400)."""
    for name in ("ChatBody", "CompletionBody", "TokenizeBody", "DetokenizeBody"):
        props = schemas[name]["properties"]
        model = props["model"]
        if "anyOf" in model:                 # optional (tokenize): a string naming the model, or null
            model["anyOf"] = [{"type": "string", "enum": [model_id]}, {"type": "null"}]
        else:
            model["enum"] = [model_id]
    for name in ("ChatBody", "CompletionBody"):
        props = schemas[name]["properties"]
        for field in ("max_tokens", "max_completion_tokens"):
            if field in props:
                props[field]["anyOf"][0]["maximum"] = config.max_tokens_limit
        props["n"]["maximum"] = min(config.max_n, config.max_conversations)
        props["stop"]["anyOf"] = [{"type": "string", "minLength": 1},
                                  {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 4},
                                  {"type": "null"}]
    prompt = {"type": "string", "minLength": 1, "maxLength": config.max_prompt_chars}
    schemas["CompletionBody"]["properties"]["prompt"]["anyOf"] = [
        prompt, {"type": "array", "items": prompt, "minItems": 1, "maxItems": 1}]


def build_openapi(app, config: ServeConfig, model_id: str) -> dict:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    _, defs = models_json_schema([(m, "validation") for m in BODIES.values()], ref_template=REF)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.clear()                          # FastAPI's own (HTTPValidationError: never sent) go
    schemas.update(copy.deepcopy(defs["$defs"]))
    schemas.update(copy.deepcopy(SCHEMAS))
    _limits(schemas, config, model_id)
    if config.api_key is not None:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            key = (method, path)
            op["responses"] = _responses(key, config.api_key is not None)
            if path in BODIES:
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": REF.format(model=BODIES[path].__name__)}}}}
            if 401 in STATUSES[key] and config.api_key is not None:
                op["security"] = [{"bearer": []}]
            for param in op.get("parameters", ()):
                if param["name"] == "name":      # /v1/models/{name}: the one model served
                    param["schema"]["examples"] = [model_id]
            if path in EXAMPLES:
                op["requestBody"]["content"]["application/json"]["example"] = {"model": model_id, **EXAMPLES[path]}
    return spec
