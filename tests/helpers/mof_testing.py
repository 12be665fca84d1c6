"""What the tests build their models from: tiny T6 and T7 sizes, the reference Keras model traced
once for every shape, mof-export's pipeline run quietly, the sizes of the checked-in trained
checkpoints, and a short trainer.

Not part of the mof package (a user never needs these); pytest puts this folder on sys.path
(pyproject: ``pythonpath``), so a test writes ``from mof_testing import tiny_config``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from mof.runtime.config import ModelConfig


@contextlib.contextmanager
def script_module(path: Path) -> Iterator[object]:
    """A script (benchmarks/*.py) imported as a module for its tests, registered in sys.modules while
    it is in use (a dataclass in it needs that) and removed afterwards."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def tiny_config(**overrides) -> ModelConfig:
    """A T6 small enough to build, export and check in seconds (n=2, L=2, Wt=6, W=12)."""
    base = dict(vocab_size=60, embed_dim=16, rnn_units=24, router_units=8, rnn_layers=2,
                trans_layers=2, num_heads=4, ffn_dim=32, max_positions=64, trans_window=6,
                window=12)
    base.update(overrides)
    return ModelConfig(**base)


def tiny_t7_config(**overrides) -> ModelConfig:
    """A T7 small enough to build, export and check in seconds: n=2, experts/1 with L=2 blocks and
    F=2E, experts/2 with L2=3 and F2=E, the temperature expert, Wt=6, W=12."""
    base = dict(vocab_size=60, embed_dim=16, rnn_units=24, router_units=8, rnn_layers=2,
                trans_layers=2, num_heads=4, ffn_dim=32, max_positions=64, trans_window=6,
                window=12, family="t7", trans_layers_2=3, ffn_dim_2=16)
    base.update(overrides)
    return ModelConfig(**base)


class TracedModel:
    """A restored Keras T6/T7 model that answers ``model(ids, training=False)`` from one trace for
    every [B, T] (mof.export.keras_model.traced_call) instead of retracing xiaothink's ``call`` for
    each new shape; anything else (layers, weights, predict) is the Keras model's own. The tests'
    reference models, and what they hand to xiaothink's generate and chat loops."""

    def __init__(self, model):
        from mof.export._tf import import_tf
        from mof.export.keras_model import traced_call
        self.keras, self._tf, self._traced = model, import_tf(), traced_call(model)

    def __call__(self, ids, training=False, **kwargs):
        if training or kwargs:
            return self.keras(ids, training=training, **kwargs)
        return self._traced(self._tf.cast(ids, self._tf.int32))

    def __getattr__(self, name):
        return getattr(self.keras, name)


def reference_model(config: ModelConfig, prefix: Path) -> TracedModel:
    """xiaothink's own Keras model for ``config``, restored from the checkpoint at ``prefix``."""
    from mof.export.checkpoint import list_variables
    from mof.export.keras_model import build_keras_model, restore
    model = build_keras_model(config)
    restore(model, prefix, list_variables(prefix))
    return TracedModel(model)


def export_bundle(prefix: Path, out: Path, config: Optional[ModelConfig] = None, **options) -> Path:
    """mof-export's pipeline, quietly: the checkpoint at ``prefix`` -> the bundle ``out``, with
    ``config``'s H, Wt and W when given and any other ExportOptions; the stage count is the
    pipeline's own (stage_count)."""
    from mof.export.pipeline import ExportOptions, export_checkpoint, stage_count
    from mof.export.progress import Progress
    if config is not None:
        options = dict(num_heads=config.num_heads, trans_window=config.trans_window, window=config.window,
                       **options)
    opts = ExportOptions(checkpoint=prefix, output=out, **options)
    return export_checkpoint(opts, Progress(stage_count(opts.int8), quiet=True))


TRAINED = {"t6": "trained_t6", "t7": "trained_t7"}    # family -> folder under tests/fixtures


def trained_config(family: str, text: str) -> ModelConfig:
    """The sizes of the tiny trained T6 and T7 (tests/fixtures/trained_*): big enough for int8's
    accuracy gates to mean something, small enough to export in seconds. The vocabulary is '▩'
    plus the characters of ``text``."""
    vocab_size = len(set(text) | {"▩"})
    common = dict(vocab_size=vocab_size, embed_dim=32, rnn_units=64, router_units=16, rnn_layers=1,
                  num_heads=4, ffn_dim=64, max_positions=128, trans_window=24, window=32)
    if family == "t6":
        return tiny_config(trans_layers=2, **common)
    return tiny_t7_config(trans_layers=1, trans_layers_2=2, ffn_dim_2=32, **common)


def train_checkpoint(folder: str | Path, config: ModelConfig, text: str, *, steps: int = 300,
                     seq_len: int = 32, batch: int = 16, lr: float = 3e-3, seed: int = 0,
                     vocab_text: Optional[str] = None, log=None) -> Path:
    """Train a small T6 or T7 on ``text`` with xiaothink's architecture and the usual every-position
    next-character loss; save a TF checkpoint and ``vocab.txt``. Returns the prefix.

    The vocabulary is '▩' plus the characters of ``vocab_text`` (default: ``text``);
    config.vocab_size must equal its size. (scripts/train_demo.py trains the demo model with
    the same pieces, on a time budget.)
    """
    from mof.export._tf import import_tf
    from mof.export.keras_model import build_keras_model
    from synthetic import char_vocab, compile_next_char, next_char_windows, save_checkpoint
    tf = import_tf()
    tf.keras.utils.set_random_seed(seed)
    vocab = char_vocab(vocab_text or text)
    if len(vocab) != config.vocab_size:
        raise ValueError(f"text has {len(vocab)} distinct characters (with '▩'), "
                         f"config.vocab_size is {config.vocab_size}")
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], np.int32)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - seq_len - 1, size=steps * batch)
    x, y = next_char_windows(ids, starts, seq_len)
    model = build_keras_model(config)
    compile_next_char(model, lr)
    hist = model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    if log:
        log(f"trained {steps} steps, final loss {hist.history['loss'][-1]:.3f}")
    return save_checkpoint(model, folder, vocab)
