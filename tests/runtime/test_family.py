"""The model family is data: a manifest's model section decides the state layout; bundles made
before T7 (no family fields, like the shipped demo) are T6. No TensorFlow needed."""

import json
import shutil

import numpy as np
import pytest

from mof.runtime import Model
from mof.runtime.config import ModelConfig
from mof.runtime.errors import MofError
from mof.writer.manifest import state_section
from mof.runtime.state import State, batch_axis, state_shapes

T6 = dict(vocab_size=60, embed_dim=16, rnn_units=24, router_units=8, rnn_layers=2, trans_layers=2,
          num_heads=4, ffn_dim=32, max_positions=64, trans_window=6, window=12)
T7 = dict(T6, family="t7", trans_layers_2=3, ffn_dim_2=16)


def test_a_manifest_without_family_fields_is_t6(demo_bundle, tmp_path):
    """Bundles made before T7 have no family fields: they are T6."""
    old = tmp_path / "pre-t7.mof"
    shutil.copytree(demo_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    for key in ("family", "trans_layers_2", "ffn_dim_2", "embed_gru"):
        manifest["model"].pop(key)
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    model = Model.load(old)
    assert (model.config.family, model.config.trans_layers_2, model.config.embed_gru) == ("t6", 0, True)
    assert list(state_shapes(model.config)) == [f["field"] for f in manifest["state"]["fields"]]
    assert ModelConfig.from_dict(ModelConfig(**T6).to_dict()) == ModelConfig(**T6)


def test_t7_layout_follows_the_config():
    t7 = ModelConfig(**T7)
    assert t7.transformers == ((2, 32), (3, 16)) and t7.num_experts == 3 and t7.blocks == 5
    shapes = state_shapes(t7)
    assert list(shapes) == ["emb_h", "router_h", "temp_h", "rnn_h", "attn_z", "attn_u", "thought_c"]
    assert shapes["temp_h"] == ["batch", 8] and shapes["attn_u"] == [5, "batch", 4, 4]
    assert state_section(t7)["floats_per_sequence"] == 16 + 8 + 8 + 2 * 24 + 5 * (16 + 16 + 16)
    bare = ModelConfig(**dict(T7, embed_gru=False))
    assert "emb_h" not in state_shapes(bare) and "emb_h" not in State.zeros(bare).names
    assert batch_axis(t7, "temp_h") == 0 and batch_axis(t7, "attn_z") == 1 and batch_axis(t7, "position") == 0


def test_a_state_from_another_family_is_refused():
    t6, t7 = ModelConfig(**T6), ModelConfig(**T7)
    with pytest.raises(MofError, match="temp_h"):
        State.zeros(t6).check(t7)
    with pytest.raises(MofError, match="saved state has fields"):
        State.from_bytes(State.zeros(t7).to_bytes(), t6)
    s = State.zeros(t7, 2)
    assert State.from_bytes(s.with_updates(temp_h=np.ones((2, 8), np.float32)).to_bytes(), t7).temp_h.sum() == 16
    with pytest.raises(MofError, match="no field"):
        s.with_updates(nonsense=np.zeros(1))
    with pytest.raises(AttributeError):
        s.rnn_h = None


@pytest.mark.parametrize("change, message", [
    (dict(family="t8"), "family must be one of t6, t7"),
    (dict(T6, trans_layers_2=1), "a T6 network has one transformer expert"),
    (dict(family="t7", ffn_dim_2=0), "ffn_dim_2 must be a positive multiple"),
    (dict(family="t7", trans_layers_2=1, ffn_dim_2=20), "ffn_dim_2 20 is not a multiple of embed_dim 16"),
    (dict(embed_gru="yes"), "embed_gru must be true or false"),
])
def test_bad_family_fields_are_refused(change, message):
    with pytest.raises(MofError, match=message):
        ModelConfig.from_dict({**T6, **change})
