"""mof-serve through the official openai client: the endpoints, their shapes, and that a request's
tokens are the runtime's Generator's for the same prompt, options and seed."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openai = pytest.importorskip("openai", reason="the serve tests use the openai client ([dev] extra)")
httpx = pytest.importorskip("httpx")

from mof.runtime import Generator, SamplingConfig  # noqa: E402
from mof.runtime.chat import Conversation  # noqa: E402
from mof.runtime.chat_session import ChatSession  # noqa: E402
from mof.serve.config import ServeConfig  # noqa: E402

from .conftest import client, running  # noqa: E402

MODEL = "t6-demo"


def expected(model, prompt, **kw):
    mode = kw.pop("mode", None)
    R = kw.pop("refill_every", None)
    return "".join(Generator(model, prompt, SamplingConfig(**kw), mode=mode, refill_every=R))


def test_completion_equals_generator_streaming_or_not(served, demo_model):
    c = client(served)
    want = expected(demo_model, "床前明月光，", max_tokens=30, seed=4)
    r = c.completions.create(model=MODEL, prompt="床前明月光，", max_tokens=30, seed=4)
    assert r.choices[0].text == want and r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (6, 30)
    pieces = [ch.choices[0].text for ch in c.completions.create(model=MODEL, prompt="床前明月光，", max_tokens=30,
                                                                   seed=4, stream=True) if ch.choices]
    assert "".join(pieces) == want and len(pieces) > 5


def test_chat_streams_deltas_usage_and_done(served, demo_model):
    """Chat messages are rendered in the bundle's form (the demo's: chat) as ChatSession renders
    them; the reply is ChatSession's, streamed or not."""
    c = client(served)
    msgs = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "你好"}]
    session = ChatSession(demo_model, SamplingConfig(max_tokens=40, seed=2, temperature=0.5))
    gen = session.turn("你好")
    want = "".join(gen)
    full = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=40, seed=2, temperature=0.5)
    assert full.choices[0].message.content == want
    reason = "stop" if gen.stats.stopped_by == "stop" else "length"
    assert full.choices[0].finish_reason == reason
    chunks = list(c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=40, seed=2, temperature=0.5,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == want
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == gen.stats.generated_tokens
    # the raw SSE ends with [DONE]
    with httpx.stream("POST", served + "/v1/chat/completions", json={"model": MODEL, "messages": msgs,
                                                                     "max_tokens": 3, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_form_override_renders_that_form(demo_model):
    """--form raw: the last user message is continued as it is (a completion of it)."""
    with running(ServeConfig(form="raw"), demo_model) as url:
        r = client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "春眠不觉晓，"}],
                                                max_tokens=20, seed=7, temperature=0.9)
    assert r.choices[0].message.content == expected(demo_model, "春眠不觉晓，", max_tokens=20, seed=7, temperature=0.9)


def test_eight_concurrent_seeded_requests_equal_their_generator_runs(served, demo_model):
    cases = [dict(prompt=p, seed=i, max_tokens=24 + 3 * i, temperature=0.8,
                  extra={"mode": "exact"} if i % 4 == 3 else ({"refill_every": 4} if i % 4 == 1 else {}))
             for i, p in enumerate(["床前明月光，", "春眠不觉晓，", "白日依山尽，", "红豆生南国，"] * 2)]

    def run(case):
        return client(served).completions.create(model=MODEL, prompt=case["prompt"], seed=case["seed"],
                                                 max_tokens=case["max_tokens"], temperature=0.8,
                                                 extra_body=case["extra"]).choices[0].text
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(run, cases))
    want = [expected(demo_model, c["prompt"], seed=c["seed"], max_tokens=c["max_tokens"], temperature=0.8,
                     **c["extra"]) for c in cases]
    assert got == want
    assert len(set(got)) == 8


def test_n_choices_use_consecutive_seeds(served, demo_model):
    r = client(served).completions.create(model=MODEL, prompt="白日依山尽，", n=3, seed=10, max_tokens=12)
    assert [ch.text for ch in sorted(r.choices, key=lambda ch: ch.index)] == \
        [expected(demo_model, "白日依山尽，", seed=10 + i, max_tokens=12) for i in range(3)]
    assert r.usage.completion_tokens == 36


def test_logprobs_are_the_models_distribution(served, demo_model):
    r = client(served).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "床前明月光，"}], max_tokens=6, temperature=0,
        logprobs=True, top_logprobs=3, extra_body={"repetition_penalty": 1.0, "mode": "exact"})
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    prompt = Conversation(demo_model.form).prompt("床前明月光，")
    logits = demo_model.exact_logits(demo_model.vocab.encode(prompt))[0].astype(np.float64)
    lp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    first = content[0]
    assert abs(first.logprob - lp.max()) < 1e-5                  # greedy: the likeliest token
    assert [t.logprob for t in first.top_logprobs] == sorted((t.logprob for t in first.top_logprobs), reverse=True)
    assert first.top_logprobs[0].token == first.token


def test_follow_up_turn_continues_the_cached_state(demo_model):
    """A second chat turn reads only its new message: cached_tokens says how much was skipped, and
    the reply is what ChatSession (mof-run's conversation) gives for that turn."""
    sampling = SamplingConfig(max_tokens=30, seed=3)
    session = ChatSession(demo_model, sampling, form="chat", mode="stream")
    want = []
    for text in ("你好", "床前明月光"):
        gen = session.turn(text)
        want.append("".join(gen))
        session.finish(gen)
    with running(ServeConfig(form="chat"), demo_model) as url:
        c = client(url)
        msgs = [{"role": "user", "content": "你好"}]
        r1 = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=30, seed=3)
        msgs += [{"role": "assistant", "content": r1.choices[0].message.content},
                 {"role": "user", "content": "床前明月光"}]
        r2 = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=30, seed=3)
        metrics = httpx.get(url + "/metrics").text
    assert [r1.choices[0].message.content, r2.choices[0].message.content] == want
    assert r1.usage.prompt_tokens_details.cached_tokens == 0
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < r2.usage.prompt_tokens
    assert "mof_state_cache_hits_total 1.0" in metrics


def test_models_health_metrics(served):
    c = client(served)
    assert [m.id for m in c.models.list()] == [MODEL]
    assert c.models.retrieve(MODEL).id == MODEL
    h = httpx.get(served + "/health")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    m = httpx.get(served + "/metrics")
    assert m.status_code == 200
    for name in ("mof_requests_total", "mof_completion_tokens_total", "mof_active_conversations",
                 "mof_queued_conversations", "mof_batch_rows_bucket", "mof_decode_tokens_per_second",
                 "mof_state_cache_hits_total"):
        assert name in m.text, name


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize("body, param", [
    ('{"model": "t6-demo", "prompt": "a", "temperature": "hot"}', "temperature"),
    ('{"model": "t6-demo", "prompt": "a", "max_tokens": -1}', "max_tokens"),
    ('{"model": "t6-demo", "prompt": "a", "stop": ["a", "b", "c", "d", "e"]}', "stop"),
    ('{"model": "t6-demo", "prompt": "a", "n": 99}', "n"),
    ('{"model": "t6-demo", "prompt": "a", "frequency_penalty": 0.5}', "frequency_penalty"),
    ('{"model": "t6-demo", "prompt": "a", "refill_every": 100000}', "refill_every"),
    ('{"model": "t6-demo", "prompt": ""}', "prompt"),
    ('{"prompt": "a"}', "model"),
    ('{"model": "t6-demo", "prompt": "a"', None),
    ('[1, 2]', None),
])
def test_bad_completion_fields_get_400_naming_the_field(served, body, param):
    r = httpx.post(served + "/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = _error(r)
    assert err["param"] == param and err["type"] == "invalid_request_error"


def test_refill_every_with_exact_mode_is_refused_by_the_api_as_by_mof_run(served, capsys):
    """One rule (mof.runtime.decoding): R belongs to stream mode; both refuse it with exact mode."""
    from mof.runtime.cli import main
    assert main(["--mode", "exact", "--refill-every", "4", "--prompt", "x"]) == 1
    cli = capsys.readouterr().err.strip()
    assert cli == "mof-run: error: --refill-every applies to stream mode only, not exact mode; use --mode stream"
    for path, body in (("/v1/completions", {"prompt": "a"}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}]})):
        r = httpx.post(served + path, json={"model": MODEL, "mode": "exact", "refill_every": 4, **body})
        assert r.status_code == 400
        err = _error(r)
        assert (err["param"], err["type"], err["code"]) == ("refill_every", "invalid_request_error", "invalid_value")
        assert err["message"] == 'refill_every applies to stream mode only, not exact mode; ask for "mode": "stream"'
    with pytest.raises(openai.BadRequestError):
        client(served).completions.create(model=MODEL, prompt="a", max_tokens=2,
                                          extra_body={"mode": "exact", "refill_every": 1})
    ok = client(served).completions.create(model=MODEL, prompt="a", max_tokens=2, extra_body={"mode": "exact"})
    assert ok.choices[0].text


def test_bad_chat_messages_get_400(served):
    for messages in ([], [{"role": "assistant", "content": "x"}], [{"role": "robot", "content": "x"}],
                     [{"role": "user", "content": 5}]):
        r = httpx.post(served + "/v1/chat/completions", json={"model": MODEL, "messages": messages})
        assert r.status_code == 400 and _error(r)["param"].startswith("messages"), (messages, r.text)
    with pytest.raises(openai.BadRequestError):
        client(served).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                               tools=[{"type": "function", "function": {"name": "f"}}])


def test_unknown_model_and_route_get_404(served):
    with pytest.raises(openai.NotFoundError) as e:
        client(served).completions.create(model="gpt-4", prompt="a")
    assert e.value.body["param"] == "model"
    r = httpx.get(served + "/v1/nothing")
    assert r.status_code == 404 and _error(r)["code"] == "not_found"


def test_api_key_is_enforced(demo_model):
    with running(ServeConfig(api_key="s3cret"), demo_model) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        assert httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a"}).status_code == 401
        assert client(url, "s3cret").completions.create(model=MODEL, prompt="a", max_tokens=2).choices
        assert httpx.get(url + "/health").status_code == 200          # health and metrics stay open


def test_body_too_large_gets_413(demo_model):
    with running(ServeConfig(max_body_bytes=200), demo_model) as url:
        r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "长" * 300})
        assert r.status_code == 413 and _error(r)["code"] == "body_too_large"


def test_full_queue_gets_429_with_retry_after(demo_model):
    with running(ServeConfig(max_conversations=1, max_queue=0), demo_model) as url:
        with httpx.stream("POST", url + "/v1/completions",
                          json={"model": MODEL, "prompt": "床", "max_tokens": 4000, "stream": True}) as long:
            lines = long.iter_lines()                 # (kept: a dropped iterator closes the stream)
            next(lines)                                               # the first one is in flight
            r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 2})
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert _error(r)["type"] == "rate_limit_error" and _error(r)["code"] == "queue_full"


def test_unloadable_model_gets_503(tmp_path):
    bad = tmp_path / "broken.mof"
    bad.mkdir()
    (bad / "manifest.json").write_text("{}")
    with running(ServeConfig(model=bad)) as url:
        r = httpx.get(url + "/health")
        for _ in range(100):
            if r.json()["status"] != "loading":
                break
            r = httpx.get(url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "error"
        r = httpx.post(url + "/v1/completions", json={"model": "broken", "prompt": "a"})
        assert r.status_code == 503 and _error(r)["type"] == "server_error"


def test_disconnect_mid_stream_frees_the_row(served):
    with httpx.stream("POST", served + "/v1/completions",
                      json={"model": MODEL, "prompt": "床", "max_tokens": 4000, "stream": True}) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
    for _ in range(200):                      # the engine drops the row at its next tick
        health = httpx.get(served + "/health").json()
        if health["active"] == 0:
            break
        import time
        time.sleep(0.02)
    assert health["active"] == 0
    assert "mof_cancelled_rows_total 1.0" in httpx.get(served + "/metrics").text


def test_sse_error_shape_is_json(served):
    r = httpx.post(served + "/v1/completions", json={"model": MODEL, "prompt": "a", "stream": True,
                                                     "max_tokens": 99999})
    assert r.status_code == 400 and json.loads(r.text)["error"]["param"] == "max_tokens"


def test_health_is_503_while_the_model_loads(demo_model):
    """/health and the endpoints answer 503 (with Retry-After) until the backend is up."""
    import threading
    from mof.serve.backend import LocalBackend
    from mof.serve.metrics import Metrics
    release = threading.Event()

    class SlowBackend(LocalBackend):
        def load(self):
            release.wait(30)
            return super().load()
    with running(ServeConfig(), backend=SlowBackend(ServeConfig(), Metrics(), demo_model), wait=False) as url:
        h = httpx.get(url + "/health")
        assert h.status_code == 503 and h.json()["status"] == "loading"
        r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a"})
        assert r.status_code == 503 and r.headers["retry-after"] == "2" and _error(r)["code"] == "loading"
        release.set()
        for _ in range(300):
            if httpx.get(url + "/health").status_code == 200:
                break
            import time
            time.sleep(0.05)
        assert client(url).completions.create(model=MODEL, prompt="a", max_tokens=2).choices


def test_prompt_over_the_limit_gets_400(demo_model):
    with running(ServeConfig(max_prompt_chars=10), demo_model) as url:
        r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "长" * 11})
        assert r.status_code == 400 and _error(r)["code"] == "context_length_exceeded"
        r = httpx.post(url + "/v1/models/..%2F..%2Fetc%2Fpasswd")
        assert r.status_code in (404, 405)
        r = httpx.post(url + "/v1/completions", json={"model": "../../etc/passwd", "prompt": "a"})
        assert r.status_code == 404 and _error(r)["param"] == "model"


# The bugs a new user hit: disconnects, the state cache, shutdown, status codes and params -----------

def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_non_streaming_disconnect_frees_its_row_within_a_tick(demo_model):
    """A client that gives up on a long non-streaming request: its row leaves at the next tick, is
    counted as cancelled, and the request as a 499, not a 200 (its events never pause, so the
    server must notice the disconnect itself, not when events stop)."""
    import time
    with running(ServeConfig(), demo_model) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/completions", timeout=httpx.Timeout(10, read=0.5),
                       json={"model": MODEL, "prompt": "床", "max_tokens": 4096, "mode": "exact"})
        t0 = time.monotonic()
        while httpx.get(url + "/health").json()["active"] and time.monotonic() - t0 < 3:
            time.sleep(0.01)
        assert httpx.get(url + "/health").json()["active"] == 0, "the row kept decoding"
        assert time.monotonic() - t0 < 1.0
        assert _metric(url, "mof_cancelled_rows_total") == 1
        metrics = httpx.get(url + "/metrics").text
        assert 'mof_requests_total{endpoint="/v1/completions",status="499"} 1.0' in metrics
        assert 'endpoint="/v1/completions",status="200"' not in metrics


def _follow_ups(url: str, conversations: int) -> list[int]:
    """Two chat turns per conversation, the second sent the moment the first is answered: the
    second turn's cached_tokens, per conversation."""
    c = client(url)
    cached = []
    for i in range(conversations):
        msgs = [{"role": "user", "content": f"第{i}个问题：你好"}]
        r1 = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, seed=i)
        msgs += [{"role": "assistant", "content": r1.choices[0].message.content}, {"role": "user", "content": "再见"}]
        r2 = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=2, seed=i)
        cached.append(r2.usage.prompt_tokens_details.cached_tokens)
    return cached


def test_an_immediate_follow_up_always_hits_the_cache(demo_model):
    with running(ServeConfig(), demo_model) as url:
        assert all(_follow_ups(url, 20)), "a follow-up sent at once missed the state cache"


def test_an_immediate_follow_up_hits_even_with_slow_ticks(demo_model, monkeypatch):
    """Slow graph calls widen the gap between a reply's last token and its state being cached: the
    reply must not be reported done before its state is in the cache."""
    import time
    import mof.serve.engine as engine_module
    real = engine_module.run_reads

    def slow(*a, **kw):
        time.sleep(0.03)
        return real(*a, **kw)
    monkeypatch.setattr(engine_module, "run_reads", slow)
    with running(ServeConfig(), demo_model) as url:
        assert all(_follow_ups(url, 3))


def test_n_over_max_conversations_is_a_400_not_a_retryable_429(demo_model):
    with running(ServeConfig(max_conversations=2), demo_model) as url:
        r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a", "n": 3, "max_tokens": 2})
        assert r.status_code == 400 and "retry-after" not in r.headers
        assert _error(r)["param"] == "n" and "max-conversations" in _error(r)["message"]


def test_every_limit_error_names_the_flag_that_raises_it(demo_model):
    """A request over one of the server's limits is told which mof-serve flag sets it, by the name
    --help lists (the n and max_tokens errors, the prompt's length, the rows held at once)."""
    import re
    from mof.serve.cli import build_parser
    flags = {s for a in build_parser()._actions for s in a.option_strings}
    config = ServeConfig(max_n=4, max_tokens_limit=5, max_prompt_chars=10, max_conversations=3)
    cases = [({"n": 5}, "n", "--max-n"), ({"max_tokens": 6}, "max_tokens", "--max-tokens-limit"),
             ({"prompt": "长" * 11}, "prompt", "--max-prompt-chars"), ({"n": 4}, "n", "--max-conversations")]
    with running(config, demo_model) as url:
        for fields, param, flag in cases:
            r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 2, **fields})
            error = _error(r)
            assert r.status_code == 400 and error["param"] == param, (fields, error)
            named = re.findall(r"\(?(--[a-z-]+)\)?", error["message"])
            assert named == [flag] and flag in flags, (fields, error["message"])


def test_prompt_over_the_limit_names_prompt_or_messages(demo_model):
    with running(ServeConfig(max_prompt_chars=10), demo_model) as url:
        r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "长" * 11})
        assert r.status_code == 400 and _error(r)["param"] == "prompt"
        r = httpx.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": [
            {"role": "user", "content": "长" * 11}]})
        assert r.status_code == 400 and _error(r)["param"] == "messages"


@pytest.mark.parametrize("messages, param", [
    ([{"role": "user", "content": 5}], "messages.0.content"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages.0.content.0.text"),
    ([{"role": "user", "content": "a"}, {"role": "robot", "content": "x"}], "messages.1.role"),
])
def test_param_names_the_field_the_client_sent(served, messages, param):
    r = httpx.post(served + "/v1/chat/completions", json={"model": MODEL, "messages": messages})
    assert r.status_code == 400 and _error(r)["param"] == param, r.text
    assert _error(r)["message"].startswith(param + ":")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_as_such(served, value):
    r = httpx.post(served + "/v1/completions", headers={"content-type": "application/json"},
                   content='{"model": "t6-demo", "prompt": "a", "temperature": %s}' % value)
    err = _error(r)
    assert r.status_code == 400 and err["param"] == "temperature"
    assert "finite" in err["message"] and "less than" not in err["message"]


def test_401_says_how_to_authenticate(demo_model):
    with running(ServeConfig(api_key="s3cret"), demo_model) as url:
        r = httpx.get(url + "/v1/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_response_format_text_is_accepted_and_json_refused(served):
    c = client(served)
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "你好"}], max_tokens=2,
                                  response_format={"type": "text"})
    assert r.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "你好"}], max_tokens=2,
                                  response_format={"type": "json_object"})
    assert e.value.body["param"] == "response_format"


def test_self_check_verdict_in_health_and_a_failed_one_is_not_served(tmp_path):
    """--self-check: the bundle's reference logits are recomputed before serving; /health carries
    the verdict, and a bundle that does not reproduce them is not served (/health says why)."""
    import shutil
    from mof.runtime import DEFAULT_BUNDLE
    with running(ServeConfig(self_check=True, precision="int8")) as url:
        for _ in range(600):
            h = httpx.get(url + "/health")
            if h.status_code == 200:
                break
            import time
            time.sleep(0.05)
        verdict = h.json()["self_check"]
        assert verdict["passed"] and verdict["max_abs_diff"] <= verdict["atol"] and verdict["rows"] == 12
        assert verdict["line"].startswith("int8  ✓")
    bundle = tmp_path / "demo.mof"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    m["self_check"]["precisions"]["fp32"]["logsumexp"] = m["self_check"]["precisions"]["int8"]["logsumexp"]
    (bundle / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with running(ServeConfig(model=bundle, self_check=True)) as url:
        for _ in range(600):
            h = httpx.get(url + "/health")
            if h.json()["status"] != "loading":
                break
            import time
            time.sleep(0.05)
        assert h.status_code == 503 and h.json()["status"] == "error"
        assert "self-check failed: fp32  ✗" in h.json()["detail"]
        r = httpx.post(url + "/v1/completions", json={"model": "demo", "prompt": "a"})
        assert r.status_code == 503
    with running(ServeConfig(model=bundle)) as url:             # without the flag: served as before
        from serve_probe import wait_healthy
        assert wait_healthy(url, lambda: True, 30)
        assert "self_check" not in httpx.get(url + "/health").json()


def test_self_check_is_a_yaml_setting_too():
    from mof.serve.config import parse_setting
    assert parse_setting("self_check", "true") is True and parse_setting("self_check", False) is False
    with pytest.raises(ValueError, match="true or false"):
        parse_setting("self_check", "maybe")
