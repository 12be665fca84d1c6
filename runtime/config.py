"""ModelConfig: every hyper-parameter of a T6 network, by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import MofError


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int       # V: rows of the token embedding and width of the head
    embed_dim: int        # E: token embedding / transformer width
    rnn_units: int        # U: width of the RNN expert GRUs and of both expert outputs
    router_units: int     # R: router GRU width
    rnn_layers: int       # n: stacked GRUs in the RNN expert (one LayerNorm shared by all)
    trans_layers: int     # L: linear-attention transformer blocks (may be 0)
    num_heads: int        # H: attention heads, dh = E / H
    ffn_dim: int          # F: transformer FFN hidden width (= dff_factor * E)
    max_positions: int    # P: rows of the position table
    trans_window: int     # Wt: the transformer sees only the last Wt positions
    window: int           # W: characters the reference re-reads per generated character (exact mode)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise MofError(f"model.{f.name} must be an integer, got {v!r}")
            low = 0 if f.name == "trans_layers" else 1
            if v < low:
                raise MofError(f"model.{f.name} must be >= {low}, got {v}")
        if self.embed_dim % self.num_heads:
            raise MofError(
                f"embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}")
        if self.ffn_dim % self.embed_dim:
            raise MofError(
                f"ffn_dim {self.ffn_dim} is not a multiple of embed_dim {self.embed_dim}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def dff_factor(self) -> int:
        return self.ffn_dim // self.embed_dim

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise MofError(f"model config is missing {', '.join(missing)}")
        return cls(**{n: d[n] for n in names})
