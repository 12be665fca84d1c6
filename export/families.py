"""The T6 model types that share xiaothink's MoEModel_t6 code path.

Copied from ``xiaothink.llm.inference.build_model.dic`` (xiaothink 1.5.1) so the
table can be read without importing TensorFlow; tests/export/test_families.py
checks it against xiaothink's own table.
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
