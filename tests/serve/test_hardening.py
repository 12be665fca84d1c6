"""What a fuzzer (schemathesis) and a hand run found: a request never answered, text that is not Unicode, a failure at
each stage of a row's life, metrics whose label sets grew with every path, and the OpenAPI schema."""

from __future__ import annotations

import json
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="mof-serve needs the [serve] extra")

from mof.serve.config import ServeConfig  # noqa: E402

from .conftest import running  # noqa: E402

MODEL = "t6-demo"
ANSWER_WITHIN = 10          # seconds: every request here is answered in well under that


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def _post(url: str, path: str, body) -> "httpx.Response":
    """``body`` as JSON text with \\uXXXX escapes (lone surrogates are valid JSON text)."""
    return httpx.post(url + path, content=json.dumps(body), headers={"content-type": "application/json"},
                      timeout=ANSWER_WITHIN)


def _sse(url: str, path: str, body) -> list[str]:
    with httpx.stream("POST", url + path, json={**body, "stream": True}, timeout=ANSWER_WITHIN) as r:
        assert r.status_code == 200, r.read()
        return [line for line in r.iter_lines() if line]


def _metrics(url: str) -> str:
    return httpx.get(url + "/metrics").text


# Text that is not Unicode -----------------------------------------------------------------------

def test_a_lone_surrogate_with_a_state_dir_is_answered_at_once(demo_model, tmp_path):
    """The reproduction: with --state-dir, "a\\ud800b" in a chat message made the cache's key hashing
    raise, and the request was never answered. Now: a 400 naming the field, at once."""
    with running(ServeConfig(state_dir=tmp_path), demo_model) as url:
        r = _post(url, "/v1/chat/completions", {"model": MODEL, "max_tokens": 4,
                                                "messages": [{"role": "user", "content": "a\ud800b"}]})
        assert r.status_code == 400 and _error(r)["param"] == "messages.0.content", r.text
        assert "Unicode" in _error(r)["message"]
        ok = _post(url, "/v1/chat/completions", {"model": MODEL, "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": "ab"}]})
        assert ok.status_code == 200


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"model": MODEL, "prompt": "\ud800"}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": ["x\udfff"]}, "prompt.0"),
    ("/v1/completions", {"model": MODEL, "prompt": "a", "stop": ["\udc00"]}, "stop.0"),
    ("/v1/completions", {"model": "\ud800", "prompt": "a"}, "model"),
    ("/v1/completions", {"model": MODEL, "prompt": "a", "user": "\ud800"}, "user"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "\ud800"}]}]}, "messages.0.content.0.text"),
    ("/tokenize", {"content": "\ud800", "with_pieces": True}, "content"),
    ("/tokenize", {"content": "a", "model": "\ud800"}, "model"),
    ("/detokenize", {"tokens": [1], "model": "\udbff"}, "model"),
    ("/v1/completions", {"model": MODEL, "prompt": "a", "\ud800": 1}, None),
])
def test_text_that_is_not_unicode_is_a_400_naming_the_field_everywhere(served, path, body, param):
    r = _post(served, path, body)
    assert r.status_code == 400, r.text
    err = _error(r)
    assert err["param"] == param and err["type"] == "invalid_request_error" and "Unicode" in err["message"]


@pytest.mark.parametrize("raw", [b'{"content": "\xff"}', b'{"content": "\xed\xa0\x80"}'])
def test_a_body_that_is_not_utf8_is_a_400_on_tokenize_as_on_chat(served, raw):
    """Raw bytes that are not UTF-8 (an encoded surrogate among them) got a 200 from /tokenize."""
    for path, body in (("/tokenize", raw),
                       ("/v1/chat/completions", raw.replace(b'"content"', b'"model": "t6-demo", "messages": '
                                                                        b'[{"role": "user", "content"') + b"]}")):
        r = httpx.post(served + path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and _error(r)["code"] == "invalid_json", (path, r.text)


# A failure at each stage of a row's life ends its request --------------------------------------

def _completion(url: str, stream: bool, **extra):
    body = {"model": MODEL, "prompt": "床前", "max_tokens": 6, "seed": 1, **extra}
    if stream:
        return _sse(url, "/v1/completions", body)
    return httpx.post(url + "/v1/completions", json=body, timeout=ANSWER_WITHIN)


def _ends_with_an_error(url: str, stream: bool, status: int = 500, **extra) -> dict:
    """The request is answered with an OpenAI-shaped error (a stream: an error event, then [DONE])."""
    if stream:
        lines = _completion(url, True, **extra)
        assert lines[-1] == "data: [DONE]", lines
        err = json.loads(lines[-2][6:])["error"]
        assert set(err) == {"message", "type", "param", "code"}
        return err
    r = _completion(url, False, **extra)
    assert r.status_code == status, r.text
    return _error(r)


def _still_serves(url: str) -> None:
    r = _completion(url, False)
    assert r.status_code == 200 and r.json()["choices"][0]["text"], r.text


@pytest.mark.parametrize("stream", [False, True])
def test_a_failure_at_admission_is_a_500(demo_model, monkeypatch, stream):
    import mof.serve.engine as engine_module

    def broken(*a, **kw):
        raise RuntimeError("injected: no decoder")
    with running(ServeConfig(), demo_model) as url:
        monkeypatch.setattr(engine_module, "make_decoder", broken)
        err = _ends_with_an_error(url, stream=False)
        assert err["type"] == "server_error" and "injected" in err["message"]
        if stream:                               # admission comes before the stream starts
            r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a", "stream": True})
            assert r.status_code == 500 and _error(r)["type"] == "server_error"
        monkeypatch.undo()
        _still_serves(url)


@pytest.mark.parametrize("stage", ["put", "lookup"])
def test_a_failing_state_cache_never_costs_a_reply(demo_model, monkeypatch, tmp_path, stage):
    """The cache is an optimisation: a failure to keep a state (the lone-surrogate bug: its key
    hashing raised while the row was finishing, and the row was never answered) or to look one up
    costs the cache hit, not the reply."""
    from mof.serve.cache import StateCache

    def broken(*a, **kw):
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "injected")
    with running(ServeConfig(state_dir=tmp_path), demo_model) as url:
        want = _completion(url, False, prompt="春眠").json()["choices"][0]["text"]
        monkeypatch.setattr(StateCache, stage, broken)
        for stream in (False, True):
            got = _completion(url, stream, prompt="春眠")
            if stream:
                assert got[-1] == "data: [DONE]" and "error" not in "".join(got), got
                text = "".join(json.loads(line[6:])["choices"][0]["text"] for line in got[:-1])
            else:
                assert got.status_code == 200, got.text
                text = got.json()["choices"][0]["text"]
            assert text == want


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("where", ["graphs", "sampling"])
def test_a_failure_while_decoding_ends_the_request(demo_model, monkeypatch, stream, where):
    import mof.serve.engine as engine_module
    from mof.runtime.generate import Generation
    real_reads, real_advance = engine_module.run_reads, Generation.advance
    calls = []

    def reads(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected: the graph failed")
        return real_reads(*a, **kw)

    def advance(self, logits):
        if self.generated == 2:
            raise RuntimeError("injected: sampling failed")
        return real_advance(self, logits)
    with running(ServeConfig(), demo_model) as url:
        if where == "graphs":
            monkeypatch.setattr(engine_module, "run_reads", reads)
        else:
            monkeypatch.setattr(Generation, "advance", advance)
        err = _ends_with_an_error(url, stream)
        assert err["type"] == "server_error" and "injected" in err["message"]
        monkeypatch.undo()
        _still_serves(url)


def test_a_failure_in_the_engines_bookkeeping_does_not_stop_it(demo_model):
    """Outside a tick (admitting, counting): the rows in flight end, the engine thread lives on."""
    from mof.serve.backend import LocalBackend
    from mof.serve.metrics import Metrics

    class Flaky(Metrics):
        failures = 1

        def conversations(self, active, queued):
            if Flaky.failures:
                Flaky.failures -= 1
                raise RuntimeError("injected: metrics failed")
            super().conversations(active, queued)
    with running(ServeConfig(), backend=LocalBackend(ServeConfig(), Flaky(), demo_model)) as url:
        err = _ends_with_an_error(url, stream=False)
        assert "injected" in err["message"]
        _still_serves(url)


@pytest.mark.parametrize("stream", [False, True])
def test_a_failure_while_responding_ends_the_request(demo_model, monkeypatch, stream):
    """Building the response (here: its logprobs) fails: a 500, or mid-stream an error event and [DONE]."""
    import mof.serve.routes_completions as routes

    def broken(*a, **kw):
        raise RuntimeError("injected: cannot render")
    with running(ServeConfig(), demo_model) as url:
        monkeypatch.setattr(routes, "_completion_logprobs", broken)
        err = _ends_with_an_error(url, stream, logprobs=1)
        assert err["type"] == "server_error"
        monkeypatch.undo()
        _still_serves(url)


# Metrics -----------------------------------------------------------------------------------------

def _request_labels(text: str) -> set:
    return {line.split("}")[0] for line in text.splitlines() if line.startswith("mof_requests_total{")}


def test_request_metrics_have_bounded_labels_and_count_every_endpoint(served):
    with httpx.Client(base_url=served) as http:
        for i in range(30):
            http.get(f"/v1/models/m{i}")
            http.post(f"/v1/models/m{i}")
            http.get(f"/nowhere/{i}")
            http.get(f"/static/no-{i}.js")
        http.post("/tokenize", json={"content": "床前"})
        http.post("/detokenize", json={"tokens": [1, 2]})
    text = _metrics(served)
    labels = _request_labels(text)
    assert not any("m1" in label or "nowhere" in label or "no-" in label for label in labels), labels
    assert 'mof_requests_total{endpoint="/v1/models/{name}",status="404"} 30.0' in text
    assert 'mof_requests_total{endpoint="/v1/models/{name}",status="405"} 30.0' in text
    assert 'mof_requests_total{endpoint="unmatched",status="404"} 30.0' in text
    assert 'mof_requests_total{endpoint="/static/{path}",status="404"} 30.0' in text
    assert 'mof_requests_total{endpoint="/tokenize",status="200"}' in text
    assert 'mof_requests_total{endpoint="/detokenize",status="200"}' in text


def test_a_streaming_client_that_disconnects_is_counted_499(demo_model):
    with running(ServeConfig(), demo_model) as url:
        with httpx.stream("POST", url + "/v1/completions",
                          json={"model": MODEL, "prompt": "床", "max_tokens": 4000, "stream": True}) as r:
            lines = r.iter_lines()
            for _ in range(3):
                next(lines)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            text = _metrics(url)
            if 'endpoint="/v1/completions"' in text:
                break
            time.sleep(0.05)
        assert 'mof_requests_total{endpoint="/v1/completions",status="499"} 1.0' in text, text
        assert 'endpoint="/v1/completions",status="200"' not in text


# The OpenAPI schema ------------------------------------------------------------------------------

def test_the_openapi_schema_declares_bodies_statuses_and_media_types(served, demo_model):
    spec = httpx.get(served + "/openapi.json").json()
    paths = spec["paths"]
    assert "401" not in paths["/v1/models"]["get"]["responses"] and "securitySchemes" not in spec["components"]
    with running(ServeConfig(api_key="k"), demo_model) as keyed:
        spec = httpx.get(keyed + "/openapi.json").json()
    paths = spec["paths"]
    assert paths["/v1/models"]["get"]["security"] == [{"bearer": []}]
    assert paths["/health"]["get"].get("security") is None
    for path, model in (("/v1/chat/completions", "ChatBody"), ("/v1/completions", "CompletionBody"),
                        ("/tokenize", "TokenizeBody"), ("/detokenize", "DetokenizeBody")):
        op = paths[path]["post"]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, (path, schema)
        assert {"400", "401", "404", "413"} <= set(op["responses"]), (path, op["responses"].keys())
        assert "422" not in op["responses"]
        assert op["responses"]["400"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/ErrorResponse"}
    for path in ("/v1/chat/completions", "/v1/completions"):
        responses = paths[path]["post"]["responses"]
        assert {"429", "500", "503"} <= set(responses)
        assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
        assert "Retry-After" in responses["429"]["headers"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    chat = spec["components"]["schemas"]["ChatBody"]
    assert chat["properties"]["max_tokens"]["anyOf"][0]["maximum"] == ServeConfig().max_tokens_limit


# Shutting down -----------------------------------------------------------------------------------

def test_a_drain_ends_requests_the_engine_lost_without_a_traceback(demo_model, monkeypatch, caplog):
    """Whatever the drain does: requests the engine no longer knows of (here: admitted, but their
    rows never reach it) are ended when --drain-seconds run out — a 503, a stream's error event and
    [DONE] — and the server stops soon after, with no traceback and nothing left for uvicorn to cancel."""
    import logging
    import threading
    import uvicorn
    from mof.serve.app import create_app
    from mof.serve.engine import Engine, Ticket
    from serve_probe import free_port, wait_healthy
    from mof.serve.shutdown import DrainingServer

    def lost(self, job, sink, on_admit=None):
        return Ticket(sink=sink, admitted=True, mode="stream", refill_every=16)
    app = create_app(ServeConfig(), demo_model)
    port = free_port()
    server = DrainingServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           timeout_graceful_shutdown=5), app.state.server, drain_seconds=1)
    thread = threading.Thread(target=server.run, daemon=True)
    caplog.set_level(logging.INFO)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    assert wait_healthy(url, thread.is_alive, 30, interval=0.02)
    monkeypatch.setattr(Engine, "submit", lost)
    answers = {}

    def ask(stream: bool):
        try:
            answers[stream] = _completion(url, stream) if stream else _completion(url, False).status_code
        except httpx.HTTPError as e:
            answers[stream] = type(e).__name__
    askers = [threading.Thread(target=ask, args=(stream,)) for stream in (False, True)]
    for a in askers:
        a.start()
    while len(app.state.server.requests) < 2:
        time.sleep(0.01)
    t0 = time.monotonic()
    server.should_exit = True                  # what SIGTERM does (uvicorn's handle_exit)
    thread.join(timeout=15)
    took = time.monotonic() - t0
    for a in askers:
        a.join(timeout=5)
    assert not thread.is_alive() and took < 4, f"stopped after {took:.1f} s"
    assert answers[False] == 503, answers
    lines = answers[True]
    assert lines[-1] == "data: [DONE]" and "shut down" in json.loads(lines[-2][6:])["error"]["message"], lines
    assert not [r for r in caplog.records if r.exc_info or "Cancel" in r.getMessage()], caplog.text
    assert "ran out: ending 2 open request(s)" in caplog.text
