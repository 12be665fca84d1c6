"""The stream decoder's recurrent state: what the step graph carries from one call to the next.

Per sequence, after tokens 0..p-1 (docs/network.md, "Stream mode"): the hidden states of the
GRUs, and per transformer block the running sums of phi(k), of v and of the block's pre-thought
outputs. A few thousand floats — no KV cache. Which fields there are follows the model's config
(T6 or T7, ``_tensor_shapes``); the manifest's ``state`` section lists them for other languages.
"""

from __future__ import annotations

import io
from typing import Iterator, Mapping, Sequence

import numpy as np

from .config import ModelConfig
from .contract import STATE_IN, STATE_OUT
from .errors import MofError


def _tensor_shapes(config: ModelConfig) -> dict[str, list]:
    """field -> symbolic shape ("batch" dynamic) of every float tensor of a State, in the step
    graph's input order. The layout follows the config (the family is data): the embedding-block
    GRU only when there is one, the temperature expert's GRU only in T7, one attention-sum row per
    transformer block over all transformer experts (experts/1's blocks, then T7's experts/2's);
    with no blocks the attention sums have a zero leading dimension."""
    c = config
    shapes = {}
    if c.embed_gru:
        shapes["emb_h"] = ["batch", c.embed_dim]                          # embedding-block GRU
    shapes["router_h"] = ["batch", c.router_units]                        # router GRU
    if c.temperature:
        shapes["temp_h"] = ["batch", c.router_units]                      # temperature-expert GRU (T7)
    shapes.update({
        "rnn_h": [c.rnn_layers, "batch", c.rnn_units],                    # RNN-expert GRUs
        "attn_z": [c.blocks, "batch", c.num_heads, c.head_dim],           # sum phi(k), per block
        "attn_u": [c.blocks, "batch", c.num_heads, c.head_dim],           # sum v, per block
        "thought_c": [c.blocks, "batch", c.embed_dim],                    # sum of LN1 outputs, per block
    })
    return shapes


def state_shapes(config: ModelConfig) -> dict[str, list]:
    """field -> symbolic shape of every state tensor the step graph takes, in its input order
    (no transformer blocks: no attention sums)."""
    shapes = _tensor_shapes(config)
    if not config.blocks:
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


def batch_axis(config: ModelConfig, field: str) -> int:
    """The axis of a State field that runs over the batch's sequences."""
    if field == "position":
        return 0
    return _tensor_shapes(config)[field].index("batch")


class State:
    """Named float32 tensors (the config's layout, ``expected_layout``) and ``position``; fields
    read as attributes (``state.rnn_h``). Immutable: ``with_updates`` returns a new State."""

    __slots__ = ("_tensors", "position")

    def __init__(self, position: np.ndarray, **tensors: np.ndarray):
        object.__setattr__(self, "_tensors", dict(tensors))   # field -> array, in layout order
        object.__setattr__(self, "position", position)        # [B] int64: tokens consumed so far

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return object.__getattribute__(self, "_tensors")[name]
        except KeyError:
            raise AttributeError(f"this state has no field {name!r}") from None

    def __setattr__(self, name, value):
        raise AttributeError("State is immutable; use with_updates")

    @classmethod
    def zeros(cls, config: ModelConfig, batch: int = 1) -> "State":
        """The state before anything is read (the one zero-state constructor; Model.initial_state
        calls it with the model's config)."""
        return cls(**{name: np.zeros(shape, dtype) for name, (shape, dtype) in
                      expected_layout(config, batch).items()})

    @property
    def batch(self) -> int:
        return int(self.position.shape[0])

    @property
    def names(self) -> list[str]:
        """Every field, the float tensors in layout order, then ``position``."""
        return list(self._tensors) + ["position"]

    def check(self, config: ModelConfig) -> None:
        """Fields, shapes and dtypes must match the model; the message says actual vs expected."""
        layout = expected_layout(config, self.batch)
        if sorted(self.names) != sorted(layout):
            raise MofError(f"state has fields {sorted(self.names)}, this model's are {sorted(layout)}")
        for name, (shape, dtype) in layout.items():
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                got = (a.shape, a.dtype) if isinstance(a, np.ndarray) else type(a).__name__
                raise MofError(f"state.{name} is {got}, expected ({shape}, {np.dtype(dtype)})")

    @classmethod
    def stack(cls, states: Sequence["State"], config: ModelConfig) -> "State":
        """One state whose rows are the given states' rows, in order (a batch for one graph call)."""
        if len(states) == 1:
            return states[0]
        return cls(**{f: np.concatenate([getattr(s, f) for s in states], axis=batch_axis(config, f))
                      for f in states[0].names})

    def rows(self, config: ModelConfig) -> list["State"]:
        """The batch-1 state of every row (views, not copies: states are never mutated)."""
        if self.batch == 1:
            return [self]
        axes = {f: batch_axis(config, f) for f in self.names}

        def row(a: np.ndarray, axis: int, i: int) -> np.ndarray:
            return a[(slice(None),) * axis + (slice(i, i + 1),)]
        return [State(**{f: row(getattr(self, f), ax, i) for f, ax in axes.items()}) for i in range(self.batch)]

    def feeds(self, config: ModelConfig) -> dict[str, np.ndarray]:
        """The step graph's state inputs."""
        return {STATE_IN + f: getattr(self, f) for f in state_shapes(config)}

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        yield from self._tensors.items()
        yield "position", self.position

    # Saving: one layout, an .npz of the fields by name (State.to_bytes; a saved conversation
    # stores the same arrays under the prefix "state.") --------------------------------------
    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {prefix + name: a for name, a in self.tensors()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], config: ModelConfig,
                    prefix: str = "") -> "State":
        """The state saved by ``to_arrays``, checked against ``config`` (MofError if it does not fit)."""
        names = list(_tensor_shapes(config)) + ["position"]
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
        unknown = set(changes) - set(self.names)
        if unknown:
            raise MofError(f"state has no field {', '.join(sorted(unknown))}")
        position = changes.pop("position", self.position)
        return State(position, **{**self._tensors, **changes})
