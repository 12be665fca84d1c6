"""The step graph against its oracles (docs/network.md): TensorFlow when L = 0, the numpy stream definition when L >= 1."""

import numpy as np
import onnxruntime as ort
import pytest

from mof.export import oracle
from mof.export.step_graph import build_step_graph, checkpoint_getter
from mof_testing import reference_model, tiny_config
from mof.runtime.contract import INPUT_IDS, LOGITS, POSITION, STATE_OUT
from mof.runtime.state import State

pytestmark = pytest.mark.tf


class Step:
    """Drive a raw step graph session with a State (independent of mof.runtime.Model)."""

    def __init__(self, cfg, prefix):
        self.cfg = cfg
        self.sess = ort.InferenceSession(build_step_graph(cfg, checkpoint_getter(prefix)).SerializeToString())
        self.names = [o.name for o in self.sess.get_outputs()]

    def __call__(self, ids, state):
        outs = dict(zip(self.names, self.sess.run(None, {INPUT_IDS: ids, POSITION: state.position,
                                                         **state.feeds(self.cfg)})))
        new = {k[len(STATE_OUT):]: v for k, v in outs.items() if k.startswith(STATE_OUT)}
        return outs[LOGITS], state.with_updates(position=state.position + ids.shape[1], **new)


def test_no_transformer_layers_equals_tensorflow_after_prefill_and_every_step(ckpt_factory):
    cfg = tiny_config(trans_layers=0, ffn_dim=16, trans_window=48, window=48, max_positions=64)
    prefix = ckpt_factory(cfg, seed=11)
    tf_model = reference_model(cfg, prefix)
    step = Step(cfg, prefix)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 40), dtype=np.int32)
    state, worst = State.zeros(cfg, 2), 0.0
    for T in range(1, 41):                                  # one token at a time
        logits, state = step(ids[:, T - 1:T], state)
        worst = max(worst, float(np.abs(logits - tf_model(ids[:, :T], training=False).numpy()[:, -1]).max()))
    for T in (1, 17, 40):                                   # whole prefixes at once
        logits, _ = step(ids[:, :T], State.zeros(cfg, 2))
        worst = max(worst, float(np.abs(logits - tf_model(ids[:, :T], training=False).numpy()[:, -1]).max()))
    print(f"L=0 step vs TensorFlow, T=1..40: max |Δlogit| {worst:.2e}")
    assert worst <= 1e-4


@pytest.mark.parametrize("layers, heads", [(1, 4), (3, 2)])
def test_step_graph_equals_the_numpy_stream_definition(ckpt_factory, layers, heads):
    cfg = tiny_config(trans_layers=layers, num_heads=heads, trans_window=8, window=16)
    prefix = ckpt_factory(cfg, seed=20 + layers)
    step = Step(cfg, prefix)
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(2, 30), dtype=np.int32)
    ref = oracle.stream_forward(oracle.load_weights(prefix, cfg), cfg, ids)     # [2, 30, V]
    state, worst = State.zeros(cfg, 2), 0.0
    for T in range(1, 31):
        logits, state = step(ids[:, T - 1:T], state)
        worst = max(worst, float(np.abs(logits - ref[:, T - 1]).max()))
    logits, _ = step(ids, State.zeros(cfg, 2))
    worst = max(worst, float(np.abs(logits - ref[:, -1]).max()))
    print(f"L={layers} step vs numpy stream oracle, T=1..30: max |Δlogit| {worst:.2e}")
    assert worst <= 1e-4
    # and stream is not exact beyond the first token: the definitions really differ
    exact = oracle.forward(oracle.load_weights(prefix, cfg), cfg, ids)
    assert np.abs(ref[:, -1] - exact[:, -1]).max() > 1e-3
