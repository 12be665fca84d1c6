"""The admission queue: a request that finds every slot taken waits, first come first served, up to
--queue-timeout; only a full queue or a timeout is a 429. Its length and wait show in /health and
/metrics."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="mof-serve needs the [serve] extra")

from mof.serve.config import ServeConfig  # noqa: E402

from .conftest import running  # noqa: E402

MODEL = "t6-demo"
LONG = {"model": MODEL, "prompt": "床", "max_tokens": 4000, "stream": True}


def _wait_for(url: str, key: str, value: int, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(url + "/health").json()
        if health[key] == value or time.monotonic() > deadline:
            return health
        time.sleep(0.01)


def test_requests_wait_in_order_for_a_free_slot(demo_model, monkeypatch):
    """One slot, a long stream in it: three requests queue, are admitted in the order they came
    once it ends, and none gets a 429."""
    from mof.serve.engine import Engine
    admitted: list[int] = []                              # the prompt lengths, in the engine's admission order
    real = Engine._admit

    def recording(self, ticket):
        admitted.append(ticket.rows[0].usage.prompt_tokens)
        return real(self, ticket)
    monkeypatch.setattr(Engine, "_admit", recording)
    with running(ServeConfig(max_conversations=1), demo_model) as url:
        def one(i: int) -> int:
            return httpx.post(url + "/v1/completions", timeout=60,
                              json={"model": MODEL, "prompt": "白" * (i + 2), "max_tokens": 3, "seed": i}).status_code
        with httpx.stream("POST", url + "/v1/completions", json=LONG, timeout=60) as long:
            lines = long.iter_lines()                    # (kept: a dropped iterator closes the stream)
            next(lines)
            with ThreadPoolExecutor(3) as pool:
                futures = []
                for i in range(3):
                    futures.append(pool.submit(one, i))
                    assert _wait_for(url, "queue_length", i + 1)["queue_length"] == i + 1   # FIFO: in this order
                health = httpx.get(url + "/health").json()
                assert health["queue_length"] == 3 and health["queue_wait_s"] > 0
                metrics = httpx.get(url + "/metrics").text
                assert "mof_queue_length 3.0" in metrics
                long.close()                                   # the slot frees
                assert [f.result() for f in futures] == [200, 200, 200]
        assert admitted == [1, 2, 3, 4]                        # the long stream ("床"), then in order
        metrics = httpx.get(url + "/metrics").text
        assert "mof_queue_wait_seconds_count 4.0" in metrics and "mof_rejected_requests_total{" not in metrics


def test_a_wait_past_the_queue_timeout_is_a_429(demo_model):
    with running(ServeConfig(max_conversations=1, queue_timeout=0.3), demo_model) as url:
        with httpx.stream("POST", url + "/v1/completions", json=LONG, timeout=60) as long:
            lines = long.iter_lines()                   # (kept: a dropped iterator closes the stream)
            next(lines)
            t0 = time.monotonic()
            r = httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 2})
            waited = time.monotonic() - t0
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "queue_timeout" and 0.3 <= waited < 3
            assert httpx.get(url + "/health").json()["queue_length"] == 0
        assert 'mof_rejected_requests_total{reason="queue_timeout"} 1.0' in httpx.get(url + "/metrics").text


def test_a_queued_client_that_leaves_leaves_the_queue(demo_model):
    with running(ServeConfig(max_conversations=1), demo_model) as url:
        with httpx.stream("POST", url + "/v1/completions", json=LONG, timeout=60) as long:
            lines = long.iter_lines()                   # (kept: a dropped iterator closes the stream)
            next(lines)
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 2},
                           timeout=httpx.Timeout(10, read=0.3))
            assert _wait_for(url, "queue_length", 0)["queue_length"] == 0
