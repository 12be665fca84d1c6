"""Make T6 and T7 checkpoints with random (but not default-initialised) weights.

Used by the tests and the benchmarks: every variable, including BatchNorm
statistics, LayerNorm gains and biases, is perturbed so that any mistake in
how a weight is read or mapped shows up as a numeric mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from mof.runtime.config import ModelConfig
from mof.runtime.contract import UNKNOWN_TOKEN

from .keras_model import build_keras_model


def randomize_weights(model, seed: int = 0, scale: float = 0.1) -> None:
    """Perturb every variable away from its initial value, keeping realistic magnitudes:
    matrices by half their own spread, vectors (biases, norm offsets) by ``scale``."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = v.numpy()
        name = v.name
        if "moving_variance" in name:
            new = rng.uniform(0.5, 1.5, value.shape)
        elif "alpha" in name.split("/")[-1]:
            new = rng.uniform(0.1, 0.9, value.shape)
        elif "gamma" in name:
            new = 1.0 + rng.normal(0, scale, value.shape)
        elif value.ndim >= 2:
            new = value + rng.normal(0, 0.5 * float(value.std()) + 1e-3, value.shape)
        else:
            new = value + rng.normal(0, scale, value.shape)
        v.assign(new.astype(value.dtype))


def make_checkpoint(folder: str | Path, config: ModelConfig, *, seed: int = 0,
                    vocab: Optional[Sequence[str]] = None, prefix: str = "ckpt",
                    model_type: Optional[str] = None) -> Path:
    """Build, randomise and save a T6 or T7 model; write ``vocab.txt`` (xiaothink's format). Returns the prefix."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_keras_model(config, model_type)
    randomize_weights(model, seed)
    path = folder / prefix
    model.save_weights(str(path))
    if vocab is None:
        vocab = demo_vocab(config.vocab_size)
    (folder / "vocab.txt").write_text(repr(list(vocab)), encoding="utf-8")
    return path


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


def demo_vocab(size: int) -> list[str]:
    """``size`` distinct characters: '▩', ASCII, then CJK ideographs."""
    chars = [UNKNOWN_TOKEN, "\n"] + [chr(c) for c in range(32, 127)]
    chars += [chr(c) for c in range(0x4E00, 0x4E00 + max(0, size - len(chars)))]
    return chars[:size]


def char_vocab(chars: Iterable[str]) -> list[str]:
    """A character vocabulary as xiaothink's tools make it: '▩' (id 0) and the sorted characters."""
    return [UNKNOWN_TOKEN] + sorted(set(chars) - {UNKNOWN_TOKEN})


def next_char_windows(ids: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs at ``starts``: x = ids[s:s+seq_len], y = the next character at every position."""
    x = np.stack([ids[s:s + seq_len] for s in starts])
    y = np.stack([ids[s + 1:s + seq_len + 1] for s in starts])
    return x, y


def compile_next_char(model, learning_rate) -> None:
    """Adam on the usual every-position next-character loss (``learning_rate``: a number or a schedule)."""
    from ._tf import import_tf
    tf = import_tf()
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def save_checkpoint(model, folder: str | Path, vocab: Sequence[str]) -> Path:
    """Save the weights as ``folder/ckpt`` and ``folder/vocab.txt`` (xiaothink's format). Returns the prefix."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ckpt"
    model.save_weights(str(path))
    (folder / "vocab.txt").write_text(repr(list(vocab)), encoding="utf-8")
    return path


def train_checkpoint(folder: str | Path, config: ModelConfig, text: str, *, steps: int = 300,
                     seq_len: int = 32, batch: int = 16, lr: float = 3e-3, seed: int = 0,
                     vocab_text: Optional[str] = None, log=None) -> Path:
    """Train a small T6 on ``text`` with xiaothink's architecture and the usual every-position
    next-character loss; save a TF checkpoint and ``vocab.txt``. Returns the prefix.

    The vocabulary is '▩' plus the characters of ``vocab_text`` (default: ``text``);
    config.vocab_size must equal its size. (scripts/train_demo.py trains the demo model with
    the same pieces, on a time budget.)
    """
    from ._tf import import_tf
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
