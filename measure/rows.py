"""Are a batch's rows independent? A row's logits alone against the same row inside a batch."""

from __future__ import annotations

import numpy as np

from mof.runtime.model import Model
from mof.runtime.state import State


def random_state(model: Model, batch: int, seed: int = 0) -> State:
    """A state as after some reading: uniform(-0.9, 0.9) in every tensor, positions 3, 4, ..."""
    rng = np.random.default_rng(seed)
    st = State.zeros(model.config, batch)
    fields = {name: rng.uniform(-0.9, 0.9, a.shape).astype(np.float32)
              for name, a in st.tensors() if name != "position"}
    return st.with_updates(position=np.arange(batch, dtype=np.int64) + 3, **fields)


def row_coupling(model: Model, ids: np.ndarray, batch: int = 16, chunks=(1, 4)) -> dict:
    """max |Δlogit| between each of ``batch`` rows run alone and the same rows run together:
    exact mode (windows of W tokens from ``ids``, spread over them) and the step graph (one call of
    each chunk length from a random state). 0.0 means bit-for-bit independent rows."""
    ids = np.asarray(ids, np.int32)
    W = min(model.config.window, len(ids) - batch)
    stride = max(1, (len(ids) - W) // batch)
    wins = np.stack([ids[i * stride: i * stride + W] for i in range(batch)])
    together = model.exact_logits(wins)
    alone = np.concatenate([model.exact_logits(wins[i:i + 1]) for i in range(batch)])
    out = {"exact": float(np.abs(together - alone).max())}
    st = random_state(model, batch)
    for chunk in chunks:
        toks = wins[:, :chunk]
        together, _ = model.step(toks, st)
        rows = st.rows(model.config)
        alone = np.concatenate([model.step(toks[i:i + 1], rows[i])[0] for i in range(batch)])
        out[f"step_chunk{chunk}"] = float(np.abs(together - alone).max())
    return out
