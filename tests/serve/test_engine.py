"""The engine without HTTP: a failing row ends alone, and the engine keeps serving."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("prometheus_client", reason="mof-serve needs the [serve] extra")

from mof.runtime import Generator, SamplingConfig  # noqa: E402
from mof.runtime.generate import Generation  # noqa: E402
from mof.serve.config import ServeConfig  # noqa: E402
from mof.serve.engine import Engine  # noqa: E402
from mof.serve.metrics import Metrics  # noqa: E402
from mof.serve.protocol import Job  # noqa: E402


def job(prompt: str, seed: int, max_tokens: int = 12) -> Job:
    return Job(prompt=prompt, sampling=SamplingConfig(seed=seed, max_tokens=max_tokens), mode=None,
               refill_every=None, n=1, top_logprobs=None, stream=True, include_usage=False)


def collect(engine: Engine, j: Job):
    events, finished = [], threading.Event()

    def sink(ev):
        events.append(ev)
        if ev.kind in ("done", "error"):
            finished.set()
    engine.submit(j, sink)
    return events, finished


def test_a_failing_row_ends_alone_and_the_engine_keeps_serving(demo_model, monkeypatch):
    engine = Engine(demo_model, ServeConfig(), Metrics())
    real = Generation.advance

    def advance(self, logits):
        if self.text.startswith("坏"):
            raise RuntimeError("boom")
        return real(self, logits)
    monkeypatch.setattr(Generation, "advance", advance)
    engine.start()
    try:
        bad, bad_done = collect(engine, job("坏了", 0))
        good, good_done = collect(engine, job("床前明月光，", 1))
        assert bad_done.wait(30) and good_done.wait(30)
        assert bad[-1].kind == "error" and "boom" in bad[-1].message
        assert "".join(e.text for e in good if e.kind == "text") == \
            "".join(Generator(demo_model, "床前明月光，", SamplingConfig(seed=1, max_tokens=12)))
        later, later_done = collect(engine, job("春眠不觉晓，", 2))
        assert later_done.wait(30) and later[-1].kind == "done"
    finally:
        engine.stop()


def test_window_reads_wait_their_turn_without_changing_tokens(demo_model, monkeypatch):
    """With one window read per tick, six new prompts (and later refills, and exact rows) are read
    a few ticks apart while the other rows step on: every row still gets Generator's tokens."""
    import mof.serve.engine as engine_module
    from mof.runtime.decoder import STEP, run_reads
    calls = []

    def recording(model, reads, max_batch=0):
        calls.append((sum(r.kind != STEP for r in reads), sum(r.kind == STEP for r in reads)))
        return run_reads(model, reads, max_batch)
    monkeypatch.setattr(engine_module, "run_reads", recording)
    engine = Engine(demo_model, ServeConfig(max_window_reads=1), Metrics())
    prompts = ["床前明月光，", "春眠不觉晓，", "白日依山尽，", "红豆生南国，", "千山鸟飞绝，", "空山不见人，"]
    jobs = [Job(prompt=p, sampling=SamplingConfig(seed=i, max_tokens=40), mode="exact" if i == 5 else None,
                refill_every=8 if i in (1, 3) else None, n=1, top_logprobs=None, stream=True, include_usage=False)
            for i, p in enumerate(prompts)]
    collected = [collect(engine, j) for j in jobs]      # all admitted before the engine starts
    engine.start()
    try:
        for (events, finished), j in zip(collected, jobs):
            assert finished.wait(60)
            want = "".join(Generator(demo_model, j.prompt, j.sampling, mode=j.mode, refill_every=j.refill_every))
            assert "".join(e.text for e in events if e.kind == "text") == want
    finally:
        engine.stop()
    assert max(w for w, _ in calls) == 1                          # one window read per tick at most
    assert calls[1] == (1, 1)           # the second prompt is read while the first row steps on
