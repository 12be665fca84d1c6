"""ModelConfig: every hyper-parameter of a T6 or T7 network, by name.

The family is data: ``family`` names xiaothink's model class, and the few fields that tell the
families apart (a second transformer expert, the temperature expert, the embedding block's GRU)
are read by every producer and consumer from here — state layout, graphs, oracle
(docs/network.md). A manifest written before T7 has none of the T7 fields: it is a T6.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import MofError

FAMILIES = ("t6", "t7")     # MoEModel_t6, MoEModel_t7
# Fields a manifest may leave out (written before T7), and what they are then.
_OPTIONAL = {"family": "t6", "trans_layers_2": 0, "ffn_dim_2": 0, "embed_gru": True}


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int       # V: rows of the token embedding and width of the head
    embed_dim: int        # E: token embedding / transformer width
    rnn_units: int        # U: width of the RNN expert GRUs and of every expert's output
    router_units: int     # R: router GRU width (and the T7 temperature expert's GRU width)
    rnn_layers: int       # n: stacked GRUs in the RNN expert (one LayerNorm shared by all)
    trans_layers: int     # L: blocks of the (first) transformer expert, experts/1 (may be 0)
    num_heads: int        # H: attention heads, dh = E / H (every transformer expert)
    ffn_dim: int          # F: the first transformer expert's FFN hidden width (= dff_factor * E)
    max_positions: int    # P: rows of each transformer expert's position table
    trans_window: int     # Wt: the transformer experts see only the last Wt positions
    window: int           # W: characters the reference re-reads per generated character (exact mode)
    family: str = "t6"    # "t6" (MoEModel_t6) or "t7" (MoEModel_t7: a second transformer expert,
                          # a three-way router, a temperature expert dividing the logits)
    trans_layers_2: int = 0   # L2: blocks of T7's second transformer expert, experts/2 (0 in T6)
    ffn_dim_2: int = 0        # F2: its FFN hidden width (T7; 0 in T6)
    embed_gru: bool = True    # the embedding block's GRU + Dense + BatchNorm (False: a bare token
                              # embedding, xiaothink's t7_cpu_standard)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise MofError(f"model.family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if not isinstance(self.embed_gru, bool):
            raise MofError(f"model.embed_gru must be true or false, got {self.embed_gru!r}")
        may_be_zero = {"trans_layers", "trans_layers_2", "ffn_dim_2"}
        for f in dataclasses.fields(self):
            if f.name in ("family", "embed_gru"):
                continue
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise MofError(f"model.{f.name} must be an integer, got {v!r}")
            low = 0 if f.name in may_be_zero else 1
            if v < low:
                raise MofError(f"model.{f.name} must be >= {low}, got {v}")
        if self.embed_dim % self.num_heads:
            raise MofError(
                f"embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}")
        for name in ("ffn_dim", "ffn_dim_2"):
            if getattr(self, name) % self.embed_dim:
                raise MofError(f"{name} {getattr(self, name)} is not a multiple of embed_dim {self.embed_dim}")
        if self.family == "t6" and (self.trans_layers_2 or self.ffn_dim_2 or not self.embed_gru):
            raise MofError("a T6 network has one transformer expert and an embedding GRU "
                           "(trans_layers_2 = ffn_dim_2 = 0, embed_gru = true)")
        if self.family == "t7" and self.ffn_dim_2 < self.embed_dim:
            raise MofError(f"model.ffn_dim_2 must be a positive multiple of embed_dim in a T7 network, "
                           f"got {self.ffn_dim_2}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def dff_factor(self) -> int:
        return self.ffn_dim // self.embed_dim

    @property
    def transformers(self) -> tuple[tuple[int, int], ...]:
        """(blocks, FFN width) of each transformer expert, experts/1 then (T7) experts/2."""
        first = ((self.trans_layers, self.ffn_dim),)
        return first + ((self.trans_layers_2, self.ffn_dim_2),) if self.family == "t7" else first

    @property
    def num_experts(self) -> int:
        """Experts the router mixes: the RNN expert and the transformer experts."""
        return 1 + len(self.transformers)

    @property
    def blocks(self) -> int:
        """Transformer blocks over all transformer experts (the attention state's leading axis)."""
        return sum(layers for layers, _ in self.transformers)

    @property
    def temperature(self) -> bool:
        """A temperature expert divides the logits (T7)."""
        return self.family == "t7"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d and n not in _OPTIONAL]
        if missing:
            raise MofError(f"model config is missing {', '.join(missing)}")
        return cls(**{n: d[n] for n in names if n in d})
