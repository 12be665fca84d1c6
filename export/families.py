"""The T6 and T7 model types of xiaothink's build_model (MoEModel_t6 and MoEModel_t7).

Copied from ``xiaothink.llm.inference.build_model.dic`` (xiaothink 1.5.1) so the
table can be read without importing TensorFlow; tests/export/test_families.py
checks it against xiaothink's own table.

T7's names cross over: xiaothink builds experts/1 with ``trans_layers_low`` blocks and FFN
``dff_factor`` x E, experts/2 with ``trans_layers`` blocks and FFN ``dff_factor_low`` x E. mof
names the transformer experts by position: ``trans_layers``/``ffn_dim`` is experts/1's,
``trans_layers_2``/``ffn_dim_2`` experts/2's (docs/network.md, "T7").
"""

from __future__ import annotations

from dataclasses import dataclass

from mof.runtime.config import ModelConfig

# The reference's generate_texts_untilstr_loop re-reads this many characters per
# generated character; QianyanModel.chat does not override it.
REFERENCE_WINDOW = 128


@dataclass(frozen=True)
class T6Type:
    embed_dim: int        # E
    rnn_units: int        # U
    rnn_layers: int       # n ('n_layer')
    router_units: int     # R
    trans_layers: int     # L
    dff_factor: int       # F / E
    num_heads: int        # H
    trans_window: int     # Wt
    max_positions: int    # P ('all_maxlen')
    train_seq_len: int    # dic[type][2]: the training sequence length (the network does not use it)

    @property
    def ffn_dim(self) -> int:
        return self.dff_factor * self.embed_dim

    def config(self, vocab_size: int, window: int = REFERENCE_WINDOW) -> ModelConfig:
        """The ModelConfig of this type for a vocabulary of ``vocab_size`` (the table leaves it open)."""
        return ModelConfig(vocab_size=vocab_size, embed_dim=self.embed_dim, rnn_units=self.rnn_units,
                           router_units=self.router_units, rnn_layers=self.rnn_layers,
                           trans_layers=self.trans_layers, num_heads=self.num_heads,
                           ffn_dim=self.ffn_dim, max_positions=self.max_positions,
                           trans_window=self.trans_window, window=window)


T6_TYPES: dict[str, T6Type] = {
    "t6_beta_dense": T6Type(512, 1400, 1, 128, 23, 1, 8, 200, 4096, 512),
    "t6_mini2": T6Type(360, 2400, 1, 128, 37, 2, 6, 130, 2048, 512),
    "t6_tiny": T6Type(240, 1400, 1, 64, 39, 2, 4, 140, 2048, 256),
    "t6_deep": T6Type(360, 1200, 1, 128, 73, 2, 4, 130, 1024, 512),
    "t6_standard": T6Type(512, 1100, 1, 128, 33, 4, 8, 140, 2048, 512),
    "t6_fast": T6Type(256, 600, 1, 64, 17, 2, 4, 140, 2048, 512),
    "t6_large": T6Type(920, 1200, 1, 512, 41, 2, 4, 130, 2048, 512),
}


@dataclass(frozen=True)
class T7Type:
    embed_dim: int          # E
    rnn_units: int          # U
    rnn_layers: int         # n ('n_layer')
    router_units: int       # R (router and temperature-expert GRUs)
    trans_layers: int       # experts/2's blocks ('trans_layers')
    trans_layers_low: int   # experts/1's blocks ('trans_layers_low')
    dff_factor: int         # experts/1's FFN width / E ('dff_factor')
    dff_factor_low: int     # experts/2's FFN width / E ('dff_factor_low')
    num_heads: int          # H
    trans_window: int       # Wt
    max_positions: int      # P ('all_maxlen')
    train_seq_len: int      # dic[type][2]: the training sequence length (the network does not use it)
    embed_gru: bool = True  # False: t7_cpu_standard's bare token embedding (TokenAndPositionEmbedding_41_01_t7_2)

    def config(self, vocab_size: int, window: int = REFERENCE_WINDOW) -> ModelConfig:
        """The ModelConfig of this type for a vocabulary of ``vocab_size`` (the table leaves it open)."""
        E = self.embed_dim
        return ModelConfig(vocab_size=vocab_size, embed_dim=E, rnn_units=self.rnn_units,
                           router_units=self.router_units, rnn_layers=self.rnn_layers,
                           trans_layers=self.trans_layers_low, num_heads=self.num_heads,
                           ffn_dim=self.dff_factor * E, max_positions=self.max_positions,
                           trans_window=self.trans_window, window=window, family="t7",
                           trans_layers_2=self.trans_layers, ffn_dim_2=self.dff_factor_low * E,
                           embed_gru=self.embed_gru)


T7_TYPES: dict[str, T7Type] = {
    "t7": T7Type(780, 780, 1, 256, 25, 7, 2, 1, 6, 140, 2048, 512),
    "t7_videoer": T7Type(560, 280, 1, 128, 13, 3, 2, 1, 14, 1300, 5000, 4096),
    "t7_small": T7Type(480, 240, 1, 64, 16, 3, 4, 1, 6, 140, 2048, 512),
    "t7_cpu_standard": T7Type(480, 420, 1, 256, 26, 2, 4, 1, 6, 96, 1024, 512, embed_gru=False),
}

# Every model type mof-export knows, by name: its family and table entry.
MODEL_TYPES: dict[str, T6Type | T7Type] = {**T6_TYPES, **T7_TYPES}
