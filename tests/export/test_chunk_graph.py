"""The chunk graph (stream refills, exact mode) against its oracles: TensorFlow's last position and
the numpy oracle's non-causal state, for L = 0, 1, 2 and lengths across the transformer crop."""

import numpy as np
import onnxruntime as ort
import pytest

from mof.export import oracle
from mof.export.step_graph import build_chunk_graph, build_step_graph, checkpoint_getter
from mof_testing import reference_model, tiny_config
from mof.runtime.contract import INPUT_IDS, LOGITS, POSITION, STATE_OUT
from mof.runtime.state import State, state_shapes

pytestmark = pytest.mark.tf


def run(sess, feeds):
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_chunk_graph_equals_tensorflow_and_the_oracles_window_state(ckpt_factory, layers):
    cfg = tiny_config(trans_layers=layers, ffn_dim=16 if layers == 0 else 32)
    prefix = ckpt_factory(cfg, seed=20 + layers)
    tf_model = reference_model(cfg, prefix)
    weights = oracle.load_weights(prefix, cfg)
    sess = ort.InferenceSession(build_chunk_graph(cfg, checkpoint_getter(prefix)).SerializeToString())
    rng = np.random.default_rng(layers)
    worst_logit = worst_state = 0.0
    for T in (1, 2, cfg.trans_window - 1, cfg.trans_window, cfg.trans_window + 1, cfg.window, 20):
        ids = rng.integers(0, cfg.vocab_size, size=(3, T), dtype=np.int32)
        out = run(sess, {INPUT_IDS: ids})
        want = tf_model(ids, training=False).numpy()[:, -1]
        worst_logit = max(worst_logit, float(np.abs(out[LOGITS] - want).max()))
        for field, ref in oracle.window_state(weights, cfg, ids).items():
            if field in state_shapes(cfg):
                worst_state = max(worst_state, float(np.abs(out[STATE_OUT + field] - ref).max()))
    assert worst_logit <= 1e-5, worst_logit
    assert worst_state <= 1e-5, worst_state


def test_the_window_state_is_not_the_causal_state(ckpt_factory):
    """The oracle's window sums differ from the stream definition's causal state after the same
    ids once L >= 2 (layer 2 reads layer 1's non-causal outputs): the chunk graph is needed."""
    cfg = tiny_config()
    prefix = ckpt_factory(cfg, seed=3)
    get = checkpoint_getter(prefix)
    chunk = ort.InferenceSession(build_chunk_graph(cfg, get).SerializeToString())
    step = ort.InferenceSession(build_step_graph(cfg, get).SerializeToString())
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(1, 5), dtype=np.int32)
    zero = State.zeros(cfg, 1)
    a = run(chunk, {INPUT_IDS: ids})
    b = run(step, {INPUT_IDS: ids, POSITION: zero.position, **zero.feeds(cfg)})
    # GRU states are causal in both; the layer-2 sums are not
    np.testing.assert_allclose(a[STATE_OUT + "rnn_h"], b[STATE_OUT + "rnn_h"], atol=1e-5)
    assert np.abs(a[STATE_OUT + "attn_u"][1] - b[STATE_OUT + "attn_u"][1]).max() > 1e-3
