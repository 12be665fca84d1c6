"""The stream decoder's recurrent state: what the step graph carries from one call to the next.

Per sequence, after tokens 0..p-1 (docs/network.md, "Stream mode"): the hidden states of the three
GRU stacks, and per transformer layer the running sums of phi(k), of v and of
the block's pre-thought outputs. A few thousand floats — no KV cache.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields, replace
from typing import Iterator, Mapping, Sequence

import numpy as np

from .config import ModelConfig
from .contract import STATE_IN, STATE_OUT
from .errors import MofError


def _tensor_shapes(config: ModelConfig) -> dict[str, list]:
    """field -> symbolic shape ("batch" dynamic) of every float tensor of a State, in the step
    graph's input order; with L = 0 the attention sums have a zero leading dimension."""
    c = config
    return {
        "emb_h": ["batch", c.embed_dim],                                  # embedding-block GRU
        "router_h": ["batch", c.router_units],                            # router GRU
        "rnn_h": [c.rnn_layers, "batch", c.rnn_units],                    # RNN-expert GRUs
        "attn_z": [c.trans_layers, "batch", c.num_heads, c.head_dim],     # sum phi(k)
        "attn_u": [c.trans_layers, "batch", c.num_heads, c.head_dim],     # sum v
        "thought_c": [c.trans_layers, "batch", c.embed_dim],              # sum of LN1 outputs
    }


def batch_axes(config: ModelConfig) -> dict[str, int]:
    """field -> the axis its rows lie along (0 for position)."""
    axes = {f: shape.index("batch") for f, shape in _tensor_shapes(config).items()}
    axes["position"] = 0
    return axes


def state_shapes(config: ModelConfig) -> dict[str, list]:
    """field -> symbolic shape of every state tensor the step graph takes, in its input order
    (L = 0 drops the attention sums)."""
    shapes = _tensor_shapes(config)
    if not config.trans_layers:
        for field in ("attn_z", "attn_u", "thought_c"):
            del shapes[field]
    return shapes


def state_io(config: ModelConfig) -> list[tuple[str, str, list]]:
    """(input name, output name, shape) for each state tensor."""
    return [(STATE_IN + f, STATE_OUT + f, s) for f, s in state_shapes(config).items()]


def expected_layout(config: ModelConfig, batch: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """field -> (shape, dtype) of every State field for ``batch`` rows."""
    layout = {f: (tuple(batch if d == "batch" else d for d in shape), np.float32)
              for f, shape in _tensor_shapes(config).items()}
    layout["position"] = ((batch,), np.int64)
    return layout


@dataclass(frozen=True)
class State:
    emb_h: np.ndarray        # [B, E]
    router_h: np.ndarray     # [B, R]
    rnn_h: np.ndarray        # [n, B, U]
    attn_z: np.ndarray       # [L, B, H, dh]
    attn_u: np.ndarray       # [L, B, H, dh]
    thought_c: np.ndarray    # [L, B, E]
    position: np.ndarray     # [B] int64: tokens consumed so far

    @classmethod
    def zeros(cls, config: ModelConfig, batch: int = 1) -> "State":
        """The state before anything is read (the one zero-state constructor; Model.initial_state
        calls it with the model's config)."""
        return cls(**{name: np.zeros(shape, dtype) for name, (shape, dtype) in
                      expected_layout(config, batch).items()})

    @property
    def batch(self) -> int:
        return int(self.position.shape[0])

    def check(self, config: ModelConfig) -> None:
        """Shapes and dtypes must match the model; the message says actual vs expected."""
        for name, (shape, dtype) in expected_layout(config, self.batch).items():
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                got = (a.shape, a.dtype) if isinstance(a, np.ndarray) else type(a).__name__
                raise MofError(f"state.{name} is {got}, expected ({shape}, {np.dtype(dtype)})")

    @classmethod
    def stack(cls, states: Sequence["State"], config: ModelConfig) -> "State":
        """One state whose rows are the given states' rows, in order (a batch for one graph call)."""
        if len(states) == 1:
            return states[0]
        axes = batch_axes(config)
        return cls(**{f: np.concatenate([getattr(s, f) for s in states], axis=axes[f]) for f in axes})

    def rows(self, config: ModelConfig) -> list["State"]:
        """The batch-1 state of every row (views, not copies: states are never mutated)."""
        if self.batch == 1:
            return [self]
        axes = batch_axes(config)
        def row(a: np.ndarray, axis: int, i: int) -> np.ndarray:
            return a[(slice(None),) * axis + (slice(i, i + 1),)]
        return [State(**{f: row(getattr(self, f), ax, i) for f, ax in axes.items()}) for i in range(self.batch)]

    def feeds(self, config: ModelConfig) -> dict[str, np.ndarray]:
        """The step graph's state inputs."""
        return {STATE_IN + f: getattr(self, f) for f in state_shapes(config)}

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        for f in fields(self):
            yield f.name, getattr(self, f.name)

    # Saving: one layout, an .npz of the fields by name (State.to_bytes; a saved conversation
    # stores the same arrays under the prefix "state.") --------------------------------------
    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + name: a for name, a in self.tensors()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: ModelConfig,
                    prefix: str = "") -> "State":
        """The state saved by ``to_arrays``, checked against ``config`` (MofError if it does not fit)."""
        names = [f.name for f in fields(cls)]
        got = sorted(k[len(prefix):] for k in arrays if k.startswith(prefix))
        if got != sorted(names):
            raise MofError(f"saved state has fields {got}, expected {sorted(names)}")
        state = cls(**{n: np.asarray(arrays[prefix + n]) for n in names})
        state.check(config)
        return state

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **self.to_arrays())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, config: ModelConfig) -> "State":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:   # np.load raises many types on junk (EOFError, BadZipFile, ...)
            raise MofError(f"not a saved mof state: {type(e).__name__}: {e}") from None
        return cls.from_arrays(arrays, config)

    def with_updates(self, **changes) -> "State":
        return replace(self, **changes)
