"""Sizes are read from the checkpoint's shapes and cross-checked against the model type."""

import shutil

import pytest

from mof.export.checkpoint import (list_variables, locate_checkpoint, read_shape_facts,
                                   resolve_config)
from mof.runtime.errors import MofError
from mof_testing import tiny_config

pytestmark = pytest.mark.tf


def test_shapes_give_every_size_but_heads_and_windows(tiny_ckpt):
    facts = read_shape_facts(list_variables(tiny_ckpt))
    cfg = tiny_config()
    assert (facts.vocab_size, facts.embed_dim, facts.rnn_units, facts.router_units,
            facts.rnn_layers, facts.trans_layers, facts.ffn_dim, facts.max_positions) == (
        cfg.vocab_size, cfg.embed_dim, cfg.rnn_units, cfg.router_units, cfg.rnn_layers,
        cfg.trans_layers, cfg.ffn_dim, cfg.max_positions)
    assert resolve_config(facts, num_heads=4, trans_window=6, window=12) == cfg


def test_locate_folder_prefix_index_and_data(tiny_ckpt):
    folder = tiny_ckpt.parent
    data = next(folder.glob("ckpt.data-*"))
    for arg in (folder, tiny_ckpt, folder / "ckpt.index", data):
        assert locate_checkpoint(arg) == tiny_ckpt


def test_folder_uses_the_latest_checkpoint(tmp_path, tiny_ckpt):
    folder = tmp_path / "c"
    shutil.copytree(tiny_ckpt.parent, folder)
    for f in folder.glob("ckpt.*"):
        shutil.copy(f, folder / f.name.replace("ckpt", "ckpt-7"))
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-7"\n'
                                       'all_model_checkpoint_paths: "ckpt"\n'
                                       'all_model_checkpoint_paths: "ckpt-7"\n')
    assert locate_checkpoint(folder) == folder / "ckpt-7"


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nope", "checkpoint not found"),
    (lambda d: d, "no 'checkpoint' file"),
])
def test_locate_errors(tmp_path, make, message):
    with pytest.raises(MofError, match=message):
        locate_checkpoint(make(tmp_path))


def test_corrupt_index_is_a_clean_error(tmp_path, tiny_ckpt):
    for f in tiny_ckpt.parent.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "ckpt.index").write_bytes(b"garbage" * 10)
    with pytest.raises(MofError, match="cannot read checkpoint"):
        list_variables(locate_checkpoint(tmp_path / "ckpt"))


def test_wrong_model_type_names_the_variable_and_both_shapes(tiny_ckpt):
    facts = read_shape_facts(list_variables(tiny_ckpt))
    with pytest.raises(MofError) as e:
        resolve_config(facts, "t6_fast")
    msg = str(e.value)
    assert "layer_with_weights-0/token_emb/embeddings" in msg
    assert "[60, 16]" in msg and "[*, 256]" in msg and "t6_fast" in msg


def test_model_type_cross_checks_layer_counts(tiny_ckpt):
    from dataclasses import replace
    facts = read_shape_facts(list_variables(tiny_ckpt))
    from mof.export.families import T6_TYPES
    t = T6_TYPES["t6_fast"]
    lookalike = replace(facts, embed_dim=t.embed_dim, rnn_units=t.rnn_units,
                        router_units=t.router_units, max_positions=t.max_positions,
                        ffn_dim=t.ffn_dim)
    with pytest.raises(MofError, match="2 RNN-expert GRUs.*t6_fast has 1"):
        resolve_config(lookalike, "t6_fast")


def test_flags_are_required_without_a_model_type(tiny_ckpt):
    facts = read_shape_facts(list_variables(tiny_ckpt))
    with pytest.raises(MofError, match="--heads and --trans-window"):
        resolve_config(facts)
    with pytest.raises(MofError, match="not a multiple of num_heads"):
        resolve_config(facts, num_heads=5, trans_window=6)
