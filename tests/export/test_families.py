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


def test_t7_table_matches_xiaothink():
    from mof.export._tf import import_xiaothink_build_model
    from mof.export.families import T7_TYPES
    from mof.export.keras_model import xiaothink_cfg
    bm = import_xiaothink_build_model()
    assert set(T7_TYPES) == {n for n in bm.dic if isinstance(n, str) and n.startswith("t7")}
    for name, t in T7_TYPES.items():
        E, cfg, seq = bm.dic[name]
        assert (t.embed_dim, t.train_seq_len) == (E, seq), name
        assert (t.rnn_units, t.rnn_layers, t.router_units, t.trans_layers, t.trans_layers_low,
                t.dff_factor, t.dff_factor_low, t.num_heads, t.trans_window, t.max_positions) == (
            cfg["rnn_units"], cfg["n_layer"], cfg["router_units"], cfg["trans_layers"],
            cfg["trans_layers_low"], cfg["dff_factor"], cfg["dff_factor_low"], cfg["num_heads"],
            cfg["trans_window"], cfg["all_maxlen"]), name
        # the dict we hand xiaothink's build_model for this type's config is xiaothink's own
        ours = xiaothink_cfg(t.config(vocab_size=1000))
        assert {k: ours[k] for k in cfg if k != "embed_q"} == {k: cfg[k] for k in cfg if k != "embed_q"}, name


def test_every_t7_type_takes_a_moemodel_t7_branch():
    from mof.export._tf import import_xiaothink_build_model
    from mof.export.families import T7_TYPES
    src = inspect.getsource(import_xiaothink_build_model().build_model)
    for name in T7_TYPES:
        assert f"mt == '{name}'" in src or f"mt=='{name}'" in src, name
    # t7_cpu_standard's branch embeds with TokenAndPositionEmbedding_41_01_t7_2 (no GRU): embed_gru False
    assert [n for n, t in T7_TYPES.items() if not t.embed_gru] == ["t7_cpu_standard"]
    assert "TokenAndPositionEmbedding_41_01_t7_2" in src.split("mt=='t7_cpu_standard'")[1]


def test_the_full_size_models_the_onnxruntime_tables_name_are_these_families():
    """runtime/ort_compat.MODELS spells the measured full-size configurations out (the runtime does
    not import the export side): they must stay the families' own."""
    from mof.export.families import T7_TYPES
    from mof.runtime.ort_compat import MODELS
    assert MODELS["t6_beta_dense V=16000"] == T6_TYPES["t6_beta_dense"].config(16000).to_dict()
    assert MODELS["t7_small V=16000"] == T7_TYPES["t7_small"].config(16000).to_dict()
