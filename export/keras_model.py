"""Rebuild a T6 or T7 network with xiaothink's own code (tf_keras) and restore a checkpoint into it."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Optional

from mof.runtime.config import ModelConfig
from mof.runtime.contract import INPUT_IDS
from mof.runtime.errors import MofError

from ._tf import import_tf, import_xiaothink_build_model
from .families import MODEL_TYPES

# The branch of xiaothink's build_model each kind of network takes (every T6 name selects the same
# MoEModel_t6 branch; t7, t7_small and t7_videoer the same MoEModel_t7 one, t7_cpu_standard its own
# with a bare embedding); the sizes come from the dict we pass, not from xiaothink's table.
_BRANCH = {("t6", True): "t6_beta_dense", ("t7", True): "t7_small", ("t7", False): "t7_cpu_standard"}


def xiaothink_cfg(config: ModelConfig) -> dict:
    """The ``rnn_units`` dict xiaothink's build_model expects (docs/network.md: T7's experts/1 is
    its 'trans_layers_low' with 'dff_factor', experts/2 its 'trans_layers' with 'dff_factor_low')."""
    cfg = {
        "rnn_units": config.rnn_units, "n_layer": config.rnn_layers, "embed_q": 0.4,
        "router_units": config.router_units, "trans_layers": config.trans_layers,
        "dff_factor": config.dff_factor, "num_heads": config.num_heads,
        "trans_window": config.trans_window, "all_maxlen": config.max_positions,
    }
    if config.family == "t7":
        cfg.update(trans_layers_low=config.trans_layers, trans_layers=config.trans_layers_2,
                   dff_factor_low=config.ffn_dim_2 // config.embed_dim, train_temper_mode=False)
    return cfg


def build_keras_model(config: ModelConfig, model_type: Optional[str] = None):
    """The network as xiaothink builds it: Input -> embedding block -> MoEModel_t6 or MoEModel_t7."""
    bm = import_xiaothink_build_model()
    mt = model_type if model_type in MODEL_TYPES else _BRANCH[(config.family, config.embed_gru)]
    with contextlib.redirect_stdout(io.StringIO()):
        return bm.build_model(config.vocab_size, config.embed_dim, xiaothink_cfg(config),
                              batch_size=1, mt=mt, window=config.window)


def count_checkpoint_weights(variables: dict) -> int:
    """Model variables in a checkpoint (optimizer slots and bookkeeping excluded)."""
    return sum(1 for n in variables if n.startswith("layer_with_weights-") and "OPTIMIZER_SLOT" not in n)


def restore(model, prefix: Path, variables: dict) -> None:
    """Restore every model variable from ``prefix``; unmatched or extra variables are errors."""
    tf = import_tf()
    try:
        status = model.load_weights(str(prefix))
        status.expect_partial()
        status.assert_existing_objects_matched()
    except AssertionError as e:
        first = str(e).splitlines()[0][:300]
        raise MofError(f"checkpoint {prefix.name} does not fit the rebuilt network: {first}") from None
    except (tf.errors.OpError, ValueError, IndexError, OSError) as e:
        # A truncated .data file surfaces as IndexError ("Read less bytes than requested").
        msg = (getattr(e, "message", None) or str(e) or type(e).__name__).splitlines()[0][:300]
        raise MofError(f"cannot restore checkpoint {prefix} (truncated or corrupt?): {msg}") from None
    n_ckpt, n_model = count_checkpoint_weights(variables), len(model.weights)
    if n_ckpt != n_model:
        raise MofError(f"checkpoint {prefix.name} holds {n_ckpt} model variables, the rebuilt "
                       f"network has {n_model}: not the same architecture")


def traced_call(model):
    """``model(ids, training=False)`` as one ``tf.function`` for every batch and length: ids [B, T]
    int32 -> logits [B, T, V]. xiaothink's ``call`` is a ``tf.function`` without an input signature,
    so calling the model itself retraces it for each new shape (~1.7 s each for a tiny T6: most of
    what checking an export cost). The ops are the same (xiaothink reads shapes with ``tf.shape``);
    the logits agree with per-shape calls to float rounding (5.7e-6 on a trained tiny T6)."""
    tf = import_tf()
    return tf.function(lambda ids: model(ids, training=False),
                       input_signature=[tf.TensorSpec([None, None], tf.int32, name=INPUT_IDS)])


_EMBEDDINGS = ("TokenAndPositionEmbedding_41_01", "TokenAndPositionEmbedding_41_01_t7",
               "TokenAndPositionEmbedding_41_01_t7_2")
_MOES = ("MoEModel_t6", "MoEModel_t7")


def find_layers(model):
    """(embedding block, MoE model) of a functional T6 or T7 model."""
    emb = moe = None
    for layer in model.layers:
        name = type(layer).__name__
        if name in _EMBEDDINGS:
            emb = layer
        elif name in _MOES:
            moe = layer
    if emb is None or moe is None:
        raise MofError("the rebuilt model is not a T6/T7 network (embedding block or MoE model missing)")
    return emb, moe


def window_function(model):
    """ids [B, T] -> logits [B, V] at the last position, computing the head for that position only.

    The same layers (same weights) as the trained model; the mix reproduces
    MoEModel_t6.call / MoEModel_t7.call, including the end-padding of the cropped transformer
    outputs and (T7) the temperature expert dividing the logits.
    """
    tf = import_tf()
    emb, moe = find_layers(model)
    temperature = getattr(moe, "compute_temperature", None)      # T7 only

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=INPUT_IDS)])
    def window_logits(ids):
        x = emb(tf.cast(ids, tf.float32))                            # [B, T, E] (Input layer is float32)
        T = tf.shape(x)[1]
        w = moe.router(x)                                            # [B, experts]
        mixed = None
        for i in range(moe.num_experts):
            o = moe.expert_norms[i](moe.experts[i](x))               # [B, T_i, U]
            pad = tf.maximum(T - tf.shape(o)[1], 0)
            o = tf.pad(o, [[0, 0], [0, pad], [0, 0]])[:, -1:, :]     # [B, 1, U]
            term = o * w[:, None, i:i + 1]
            mixed = term if mixed is None else mixed + term
        # The layers were built for rank-3 input: keep the length-1 sequence axis.
        logits = moe.next_token_predictor(moe.combined_norm(mixed))[:, 0, :]   # [B, V]
        if temperature is not None:
            logits = logits / tf.maximum(temperature(x), 1e-6)       # [B, V] / [B, 1]
        return logits

    return window_logits
