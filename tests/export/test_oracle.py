"""Oracle 3 (export/oracle.py): numpy T6 == TF at every position; stream is causal and differs from exact."""

import numpy as np
import pytest

from mof.export.oracle import forward, load_weights, stream_forward
from mof_testing import reference_model, tiny_config

pytestmark = pytest.mark.tf

SHAPES = {
    "n1-L0": dict(rnn_layers=1, trans_layers=0),
    "n2-L1": dict(rnn_layers=2, trans_layers=1),
    "n1-L3-H2": dict(rnn_layers=1, trans_layers=3, num_heads=2, ffn_dim=32),   # ffn_dim = 2 * embed_dim
}


@pytest.fixture(scope="module")
def loaded(ckpt_factory):
    """loaded(shape) -> (config, numpy weights, TF model); each built once."""
    cache = {}

    def get(shape):
        if shape not in cache:
            cfg = tiny_config(**SHAPES[shape])
            prefix = ckpt_factory(cfg, seed=7 + len(cache))
            model = reference_model(cfg, prefix)
            cache[shape] = (cfg, load_weights(prefix, cfg), model)
        return cache[shape]
    return get


def _tf(model, ids):
    return model(ids, training=False).numpy()


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_forward_matches_tensorflow_at_every_position(shape, loaded):
    cfg, w, model = loaded(shape)
    rng = np.random.default_rng(1)
    worst = 0.0
    for seq in (1, 5, cfg.trans_window, cfg.trans_window + 4):
        ids = rng.integers(0, cfg.vocab_size, size=(2, seq), dtype=np.int32)
        want = _tf(model, ids)
        got = forward(w, cfg, ids)
        assert got.shape == want.shape == (2, seq, cfg.vocab_size)
        diff = float(np.abs(got - want).max())
        print(f"{shape} T={seq}: forward vs TF max abs diff {diff:.3g}")
        assert diff <= 1e-5
        worst = max(worst, diff)
    assert np.abs(want).max() > 0.1   # the comparison is not between near-zero tensors
    print(f"{shape}: worst {worst:.3g}")


def test_stream_equals_tensorflow_without_transformer_layers(loaded):
    cfg, w, model = loaded("n1-L0")
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, size=(2, cfg.trans_window), dtype=np.int32)
    stream = stream_forward(w, cfg, ids)
    worst = 0.0
    for p in range(ids.shape[1]):
        want = _tf(model, ids[:, :p + 1])[:, -1]          # what the reference predicts after p+1 tokens
        worst = max(worst, float(np.abs(stream[:, p] - want).max()))
    print(f"n1-L0 stream[:, p] vs TF(ids[:, :p+1])[:, -1], p < Wt: max abs diff {worst:.3g}")
    assert worst <= 1e-5
    # ...but not at earlier positions of one non-causal pass: the router weight is per sequence in TF.
    assert np.abs(stream[:, :-1] - _tf(model, ids)[:, :-1]).max() > 1e-3


@pytest.mark.parametrize("shape", ["n2-L1", "n1-L3-H2"])
def test_stream_is_causal_and_not_the_reference_network(shape, loaded):
    cfg, w, _ = loaded(shape)
    ids = np.random.default_rng(3).integers(0, cfg.vocab_size, size=(2, cfg.trans_window + 3), dtype=np.int32)
    T = ids.shape[1]
    stream = stream_forward(w, cfg, ids)
    exact_last = np.stack([forward(w, cfg, ids[:, :p + 1])[:, -1] for p in range(T)], axis=1)   # [B, T, V]
    diffs = np.abs(stream - exact_last).max(axis=(0, 2))                                       # [T]
    per_p = np.array2string(diffs, precision=3)
    print(f"{shape} |stream[:, p] - forward(ids[:, :p+1])[:, -1]| per p: {per_p}")
    assert diffs[0] <= 1e-12          # one token: causal and non-causal sums, means and positions agree
    assert diffs[1:].max() > 1e-3     # later: running vs global sums and thought mean make them differ

    for k in range(1, T + 1):         # prefix-consistent: the future never changes the past
        np.testing.assert_allclose(stream_forward(w, cfg, ids[:, :k]), stream[:, :k], atol=1e-12, rtol=0)
