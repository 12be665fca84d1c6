"""Our T6 table is xiaothink's table."""

import inspect

import pytest

from mof.export.families import T6_TYPES

pytestmark = pytest.mark.tf


def test_table_matches_xiaothink():
    from mof.export._tf import import_xiaothink_build_model
    bm = import_xiaothink_build_model()
    for name, t in T6_TYPES.items():
        E, cfg, seq = bm.dic[name]
        assert (t.embed_dim, t.train_seq_len) == (E, seq), name
        assert (t.rnn_units, t.rnn_layers, t.router_units, t.trans_layers, t.dff_factor,
                t.num_heads, t.trans_window, t.max_positions) == (
            cfg["rnn_units"], cfg["n_layer"], cfg["router_units"], cfg["trans_layers"],
            cfg["dff_factor"], cfg["num_heads"], cfg["trans_window"], cfg["all_maxlen"]), name


def test_type_config_is_what_xiaothink_builds():
    from mof.export._tf import import_xiaothink_build_model
    from mof.export.keras_model import xiaothink_cfg
    bm = import_xiaothink_build_model()
    for name, t in T6_TYPES.items():
        E, cfg, _ = bm.dic[name]
        config = t.config(vocab_size=1000)
        ours = xiaothink_cfg(config)
        shared = set(ours) & set(cfg) - {"embed_q"}
        assert len(shared) == 8 and {k: ours[k] for k in shared} == {k: cfg[k] for k in shared}, name
        assert (config.embed_dim, config.vocab_size, config.window) == (E, 1000, 128), name


def test_every_type_takes_the_moemodel_t6_branch():
    from mof.export._tf import import_xiaothink_build_model
    src = inspect.getsource(import_xiaothink_build_model().build_model)
    for name in T6_TYPES:
        assert f"mt == '{name}'" in src, name
