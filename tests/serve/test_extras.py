"""What users of local OpenAI-compatible servers expect: CORS for browser front-ends (off unless
asked), per-request timings, /tokenize and /detokenize."""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai", reason="the serve tests use the openai client ([dev] extra)")

from mof.serve.config import ServeConfig  # noqa: E402

from .conftest import client, running  # noqa: E402

MODEL = "t6-demo"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


def test_cors_is_off_by_default(served):
    r = httpx.options(served + "/v1/chat/completions", headers={"Origin": "http://localhost:3000", **PREFLIGHT})
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(served + "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_allows_the_origins_given_only(demo_model):
    with running(ServeConfig(cors_origins=("http://localhost:3000",), api_key="k"), demo_model) as url:
        r = httpx.options(url + "/v1/chat/completions", headers={"Origin": "http://localhost:3000", **PREFLIGHT})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = httpx.get(url + "/v1/models", headers={"Origin": "http://localhost:3000", "Authorization": "Bearer k"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = httpx.options(url + "/v1/chat/completions", headers={"Origin": "http://evil.example", **PREFLIGHT})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers


def _check_timings(t: dict, prompt_tokens: int, completion_tokens: int) -> None:
    assert t["prompt_tokens"] == prompt_tokens and t["completion_tokens"] == completion_tokens
    assert t["queue_ms"] >= 0 and t["prompt_ms"] > 0 and t["decode_ms"] > 0
    assert t["decode_tokens_per_second"] == pytest.approx((completion_tokens - 1) / (t["decode_ms"] / 1000), rel=0.01)


def test_timings_in_every_response(served):
    c = client(served)
    r = c.completions.create(model=MODEL, prompt="床前明月光，", max_tokens=12, seed=1)
    _check_timings(r.model_extra["timings"], 6, 12)
    assert r.model_extra["timings"]["cached_tokens"] == r.usage.prompt_tokens_details.cached_tokens
    chunks = list(c.completions.create(model=MODEL, prompt="床前明月光，", max_tokens=12, seed=1, stream=True,
                                       stream_options={"include_usage": True}))
    finish = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason][0]
    _check_timings(finish.model_extra["timings"], 6, 12)
    _check_timings(chunks[-1].model_extra["timings"], 6, 12)
    r = c.completions.create(model=MODEL, prompt="春眠不觉晓，", max_tokens=5, n=3, seed=1)
    assert r.model_extra["timings"]["completion_tokens"] == 15


def test_tokenize_and_detokenize_use_the_models_vocabulary(served, demo_model):
    text = "床前明月光，\U0001F600"                       # the emoji is not in the vocabulary
    r = httpx.post(served + "/tokenize", json={"content": text})
    assert r.status_code == 200 and r.json()["tokens"] == demo_model.vocab.encode(text)
    pieces = httpx.post(served + "/tokenize", json={"content": "床前", "with_pieces": True}).json()["tokens"]
    assert pieces == [{"id": demo_model.vocab.encode("床")[0], "piece": "床"},
                      {"id": demo_model.vocab.encode("前")[0], "piece": "前"}]
    ids = demo_model.vocab.encode("床前明月光")
    assert httpx.post(served + "/detokenize", json={"tokens": ids}).json() == {"content": "床前明月光"}
    r = httpx.post(served + "/detokenize", json={"tokens": [1, demo_model.vocab.size]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens.1"
    r = httpx.post(served + "/tokenize", json={"content": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "content"
    r = httpx.post(served + "/tokenize", json={"content": "a", "model": "gpt-4"})
    assert r.status_code == 404


def test_tokenize_needs_the_api_key_when_one_is_set(demo_model):
    with running(ServeConfig(api_key="k"), demo_model) as url:
        assert httpx.post(url + "/tokenize", json={"content": "a"}).status_code == 401
        assert httpx.post(url + "/tokenize", json={"content": "a"}, headers={"Authorization": "Bearer k"}).json() \
            == {"tokens": demo_model.vocab.encode("a")}
