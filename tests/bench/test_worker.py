"""mof-bench's worker times only warm calls: every onnxruntime run and every sampling it times was
made once, with the same input shapes, before its first timing. Nothing is timed here: the clock is
a counter that records when it is read."""

import numpy as np
import onnxruntime as ort
import pytest

from mof.bench import worker
from mof.runtime.model import Model
from mof.runtime.sampling import Sampler, SamplingConfig

CLOCK = ("clock",)


def recorded(monkeypatch) -> tuple[list, object]:
    """(events, clock): every session run (session, input shapes), sampling and clock reading, in order."""
    events = []
    run, sample = ort.InferenceSession.run, Sampler.sample

    def recording_run(self, output_names, input_feed, run_options=None):
        events.append(("run", id(self), tuple(sorted((k, np.shape(v)) for k, v in input_feed.items()))))
        return run(self, output_names, input_feed, run_options)

    def recording_sample(self, logits, recent):
        events.append(("sample",))
        return sample(self, logits, recent)

    def clock() -> float:
        events.append(CLOCK)
        return float(len(events))
    monkeypatch.setattr(ort.InferenceSession, "run", recording_run)
    monkeypatch.setattr(Sampler, "sample", recording_sample)
    return events, clock


@pytest.fixture(scope="module")
def model(demo_bundle):
    return Model.load(demo_bundle, precision="fp32")


def _measure(model, monkeypatch, mode: str, warmup: int):
    events, clock = recorded(monkeypatch)
    sampler = Sampler(SamplingConfig(seed=0), model.vocab)
    # R = 4: refills inside the 12 decoded tokens; prompts of 8 and 100 (above the window W = 64)
    result = worker.measure_mode(model, mode, 4, sampler, [8, 100], 12, warmup, clock=clock)
    return events, result


@pytest.mark.parametrize("mode", worker.MODES)
def test_every_timed_call_ran_untimed_first(model, monkeypatch, mode):
    events, result = _measure(model, monkeypatch, mode, warmup=1)
    first = events.index(CLOCK)
    warm = set(events[:first])
    timed = [e for e in events[first:] if e != CLOCK]
    assert {e[0] for e in timed} == {"run", "sample"}
    assert set(timed) <= warm, set(timed) - warm
    assert set(result["prefill"]) == {"8", "100"} and result["decode_ms_p50"] > 0


def test_without_a_warm_up_the_first_timing_is_the_first_call(model, monkeypatch):
    """What the test above guards against: the first timed call would pay the first-call costs."""
    events, _ = _measure(model, monkeypatch, "stream", warmup=0)
    assert events[0] == CLOCK
