"""run_reads: refills (and exact windows) that fall due together are one batched window pass, and
batching changes no row's logits beyond fp32 rounding (int8: the same integers per row)."""

import numpy as np
import pytest

from mof.runtime import DEFAULT_BUNDLE, Model
from mof.runtime.decoder import EXACT, REFILL, STEP, Read, run_reads


@pytest.fixture(scope="module", params=["fp32", "int8"])
def counted(request):
    model = Model.load(DEFAULT_BUNDLE, precision=request.param)
    calls = []
    for name in ("refill", "exact_logits", "step"):
        real = getattr(model, name)

        def wrapped(ids, *a, _real=real, _name=name, **k):
            calls.append((_name, np.asarray(ids).shape))
            return _real(ids, *a, **k)
        setattr(model, name, wrapped)
    return model, calls


def test_equal_length_window_reads_are_one_pass(counted):
    model, calls = counted
    W = model.config.window
    rng = np.random.default_rng(0)
    K = W - 16 + 1
    refills = [Read(REFILL, tuple(rng.integers(0, model.config.vocab_size, K)), None) for _ in range(4)]
    exact = [Read(EXACT, tuple(rng.integers(0, model.config.vocab_size, W)), None) for _ in range(3)]
    odd = Read(REFILL, tuple(rng.integers(0, model.config.vocab_size, K - 5)), None)
    calls.clear()
    together = run_reads(model, refills + exact + [odd])
    # one chunk pass for the four refills of length K, one for the other length, one exact pass
    assert sorted(calls) == sorted([("refill", (4, K)), ("refill", (1, K - 5)), ("exact_logits", (3, W))])
    calls.clear()
    alone = [run_reads(model, [r])[0] for r in refills + exact + [odd]]
    assert len(calls) == 8
    for (la, sa), (lb, sb) in zip(together, alone):
        assert np.abs(la - lb).max() <= 1e-5                 # window passes: fp32 rounding at most
        if sa is not None:
            for f in sa.names:
                assert np.abs(getattr(sa, f) - getattr(sb, f)).max(initial=0.0) <= 1e-5
    # steps of rows that share a tick: one step-graph call, each row bit for bit as alone
    states = [s for _, s in together[:4]]
    steps = [Read(STEP, (int(i),), s) for i, s in zip(rng.integers(0, model.config.vocab_size, 4), states)]
    calls.clear()
    batched = run_reads(model, steps)
    assert calls == [("step", (4, 1))]
    for (la, _), r in zip(batched, steps):
        assert np.array_equal(la, run_reads(model, [r])[0][0])
