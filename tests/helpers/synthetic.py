"""Make T6 and T7 checkpoints with random (but not default-initialised) weights, and the pieces
of a next-character trainer (scripts/train_demo.py, the tests' tiny trained models).

Every variable, including BatchNorm statistics, LayerNorm gains and biases, is perturbed so that
any mistake in how a weight is read or mapped shows up as a numeric mismatch. The tests' own model
sizes and trainer live in mof_testing.py beside it.

Not part of the mof package: pytest puts this folder on sys.path (pyproject: ``pythonpath``);
benchmarks/ and scripts/ insert it themselves (``sys.path.insert(0, "<repo>/tests/helpers")``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from mof.runtime.config import ModelConfig
from mof.runtime.contract import UNKNOWN_TOKEN

from mof.export.keras_model import build_keras_model


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
    from mof.export._tf import import_tf
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
