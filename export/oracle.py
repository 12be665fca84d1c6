"""Oracle 3: an independent pure-numpy T6 network (docs/network.md).

``forward`` is the reference network exactly as xiaothink's TF code computes it
(non-causal, Wt crop, end padding); ``stream_forward`` *defines* the stream
decoder: the same weights, everything causal (running sums of phi(k) and v,
running mean for the thought vector, Pos[p], router state at p).
Everything is computed in float64. Shapes: B batch, T length, E embed_dim,
U rnn_units, R router_units, H heads, D head_dim, V vocab_size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mof.runtime.config import ModelConfig

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_EMB = "layer_with_weights-0/"
_MOE = "layer_with_weights-1/"
_RNN = _MOE + "experts/0/"
_TRF = _MOE + "experts/1/"


@dataclass(frozen=True, eq=False)
class Dense:
    w: np.ndarray   # [in, out]
    b: np.ndarray   # [out]

    def __call__(self, x):
        return x @ self.w + self.b


@dataclass(frozen=True, eq=False)
class Norm:
    """LayerNorm over the last axis (Keras: biased variance, eps inside the sqrt)."""
    gamma: np.ndarray   # [N]
    beta: np.ndarray    # [N]
    eps: float

    def __call__(self, x):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.gamma + self.beta


@dataclass(frozen=True, eq=False)
class GRU:
    """Keras GRU, reset_after=True, gate order z, r, h; zero initial state."""
    kernel: np.ndarray      # [in, 3N]
    recurrent: np.ndarray   # [N, 3N]
    bias: np.ndarray        # [2, 3N]: input bias, recurrent bias

    def __call__(self, x):                                  # [B, T, in] -> all states [B, T, N]
        n = self.recurrent.shape[0]
        xs = x @ self.kernel + self.bias[0]                  # [B, T, 3N]
        h = np.zeros((x.shape[0], n))                        # [B, N]
        out = np.empty(x.shape[:2] + (n,))
        for t in range(x.shape[1]):
            rec = h @ self.recurrent + self.bias[1]          # [B, 3N]
            z = _sigmoid(xs[:, t, :n] + rec[:, :n])
            r = _sigmoid(xs[:, t, n:2 * n] + rec[:, n:2 * n])
            hh = np.tanh(xs[:, t, 2 * n:] + r * rec[:, 2 * n:])
            h = z * h + (1 - z) * hh
            out[:, t] = h
        return out


@dataclass(frozen=True, eq=False)
class Block:
    q: Dense                # lmha/query_dense [E, E]
    k: Dense                # lmha/key_dense [E, E]
    v: Dense                # lmha/value_dense [E, E]
    combine: Dense          # lmha/combine_heads [E, E]
    attn: Dense             # attn_dense [E, E]
    ln1: Norm               # eps 1e-6
    ln2: Norm               # eps 1e-6
    thought1: Dense         # thought_processor: gelu(c W1) W2, [E, E] each
    thought2: Dense
    alpha: float
    ffn1: Dense             # [E, F], gelu
    ffn2: Dense             # [F, E]


@dataclass(frozen=True, eq=False)
class T6Weights:
    emb: np.ndarray                  # [V, E] token embedding
    emb_gru: GRU                     # E -> E
    emb_dense: Dense                 # [E, E], relu
    bn: tuple                        # (gamma, beta, moving_mean, moving_variance), each [E]
    router_gru: GRU                  # E -> R
    router_norm: Norm                # eps 1e-3
    router_dense: Dense              # [R, 2], softmax
    rnn_grus: tuple                  # n GRUs: E -> U, then U -> U
    lnl: Norm                        # ONE LayerNorm after every RNN-expert GRU, eps 1e-6
    pos: np.ndarray                  # [P, E] position table
    blocks: tuple                    # L Blocks
    trans_out: Dense                 # [E, U]
    expert_norms: tuple              # 2 Norms [U], eps 1e-3
    combined_norm: Norm              # eps 1e-3
    head: Dense                      # [U, V]


def load_weights(prefix: str | Path, config: ModelConfig) -> T6Weights:
    """Read every tensor the T6 network uses from a TF checkpoint (as float64)."""
    from ._tf import import_tf
    reader = import_tf().train.load_checkpoint(str(prefix))

    def get(name):
        return reader.get_tensor(name + _SUFFIX).astype(np.float64)

    def dense(name):
        return Dense(get(name + "/kernel"), get(name + "/bias"))

    def norm(name, eps):
        return Norm(get(name + "/gamma"), get(name + "/beta"), eps)

    def gru(name):
        return GRU(get(name + "/cell/kernel"), get(name + "/cell/recurrent_kernel"), get(name + "/cell/bias"))

    def block(i):
        p = f"{_TRF}transformer_blocks/{i}/"
        return Block(q=dense(p + "lmha/query_dense"), k=dense(p + "lmha/key_dense"),
                     v=dense(p + "lmha/value_dense"), combine=dense(p + "lmha/combine_heads"),
                     attn=dense(p + "attn_dense"), ln1=norm(p + "layernorm1", 1e-6),
                     ln2=norm(p + "layernorm2", 1e-6),
                     thought1=dense(p + "thought_processor/layer_with_weights-0"),
                     thought2=dense(p + "thought_processor/layer_with_weights-1"),
                     alpha=float(get(p + "alpha")[0]),
                     ffn1=dense(p + "ffn/layer_with_weights-0"), ffn2=dense(p + "ffn/layer_with_weights-1"))

    return T6Weights(
        emb=get(_EMB + "token_emb/embeddings"), emb_gru=gru(_EMB + "lstm1"), emb_dense=dense(_EMB + "dense"),
        bn=tuple(get(_EMB + "bn/" + n) for n in ("gamma", "beta", "moving_mean", "moving_variance")),
        router_gru=gru(_MOE + "router_gru"), router_norm=norm(_MOE + "router_gru_norm", 1e-3),
        router_dense=dense(_MOE + "router_dense"),
        rnn_grus=tuple(gru(f"{_RNN}context_encoders/{i}") for i in range(config.rnn_layers)),
        lnl=norm(_RNN + "lnl", 1e-6),
        pos=get(_TRF + "position_embedding/position_embedding/embeddings"),
        blocks=tuple(block(i) for i in range(config.trans_layers)),
        trans_out=dense(_TRF + "dense"),
        expert_norms=tuple(norm(f"{_MOE}expert_norms/{i}", 1e-3) for i in range(2)),
        combined_norm=norm(_MOE + "combined_norm", 1e-3), head=dense(_MOE + "next_token_predictor"))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x):                                        # exact (erf) gelu, as Keras 'gelu'
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _phi(x):                                         # elu(x) + 1
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _running(x, causal):
    """Sum over the time axis 1: per position over 0..p (causal) or over all positions (broadcast)."""
    return np.cumsum(x, axis=1) if causal else np.broadcast_to(x.sum(1, keepdims=True), x.shape)


def _embed(w: T6Weights, ids):                       # ids [B, T] -> x [B, T, E]
    e = w.emb[ids]                                   # [B, T, E]
    d = np.maximum(w.emb_dense(w.emb_gru(e)), 0.0)   # [B, T, E]
    gamma, beta, mean, var = w.bn
    return (d - mean) / np.sqrt(var + 1e-3) * gamma + beta + e


def _rnn_expert(w: T6Weights, x):                    # [B, T, E] -> [B, T, U]
    h = x
    for gru in w.rnn_grus:
        h = w.lnl(gru(h))
    return h


def _block(blk: Block, heads: int, y, causal, sums=None):   # [B, T, E] -> [B, T, E]
    """``sums``: a list to append this layer's (sum phi(k), sum v, sum o) over all T positions to."""
    B, T, E = y.shape
    split = (B, T, heads, E // heads)
    q = _phi(blk.q(y)).reshape(split)                # [B, T, H, D]
    k = _phi(blk.k(y)).reshape(split)                # [B, T, H, D]
    v = blk.v(y).reshape(split)                      # [B, T, H, D]
    z = _running(k, causal)                          # [B, T, H, D]  sum of phi(k)
    u = _running(v, causal)                          # [B, T, H, D]  sum of v; the code's kv = z outer u
    qz = np.einsum("bthd,bthd->bth", q, z)[..., None]   # [B, T, H, 1]
    a = (qz / (qz + 1e-6) * u).reshape(B, T, E)      # [B, T, E]  = (q.kv) / (q.z + 1e-6)
    o = blk.ln1(y + blk.attn(blk.combine(a)))        # [B, T, E]
    count = np.arange(1, T + 1)[:, None] if causal else T
    c = _running(o, causal) / count                  # [B, T, E]  mean of o (running or global)
    if sums is not None:
        sums.append((k.sum(1), v.sum(1), o.sum(1)))  # [B, H, D], [B, H, D], [B, E]
    o = o + blk.alpha * blk.thought2(_gelu(blk.thought1(c)))
    return blk.ln2(o + blk.ffn2(_gelu(blk.ffn1(o))))


def _transformer(w: T6Weights, config: ModelConfig, x, causal, sums=None):   # [B, T, E] -> normed [B, T, U]
    T = x.shape[1]
    if T > w.pos.shape[0]:
        raise ValueError(f"sequence length {T} exceeds the position table ({w.pos.shape[0]})")
    y = x + w.pos[:T]                                 # [B, T, E]
    if not causal:
        y = y[:, max(0, T - config.trans_window):]   # [B, T', E] crop to the last Wt positions
    for blk in w.blocks:
        y = _block(blk, config.num_heads, y, causal, sums)
    out = w.expert_norms[1](w.trans_out(y))          # [B, T', U]
    pad = T - out.shape[1]                            # zero-pad AT THE END (after the norm)
    return np.pad(out, ((0, 0), (0, pad), (0, 0)))   # [B, T, U]


def _logits(w: T6Weights, config: ModelConfig, ids, causal):
    ids = np.asarray(ids)
    x = _embed(w, ids)                                       # [B, T, E]
    r = w.router_gru(x)                                      # [B, T, R] all states
    if not causal:
        r = r[:, -1:]                                        # [B, 1, R] final state: one weight per sequence
    gate = _softmax(w.router_dense(w.router_norm(r)))        # [B, T or 1, 2]
    n0 = w.expert_norms[0](_rnn_expert(w, x))                # [B, T, U]
    n1 = _transformer(w, config, x, causal)                  # [B, T, U]
    m = w.combined_norm(gate[..., :1] * n0 + gate[..., 1:] * n1)   # [B, T, U]
    return w.head(m)                                         # [B, T, V]


def forward(weights: T6Weights, config: ModelConfig, ids) -> np.ndarray:
    """The reference network, non-causal, as TF computes it: ids [B, T] -> logits [B, T, V]."""
    return _logits(weights, config, ids, causal=False)


def stream_forward(weights: T6Weights, config: ModelConfig, ids) -> np.ndarray:
    """The stream definition (docs/network.md, "Stream mode"), causal at every position: ids [B, T] -> logits [B, T, V]."""
    return _logits(weights, config, ids, causal=True)


def window_state(w: T6Weights, config: ModelConfig, ids) -> dict[str, np.ndarray]:
    """The stream state after reading ``ids`` [B, T] with the reference's (window) semantics,
    what the chunk graph must output: every GRU's final state, and per transformer layer the
    sums of phi(k), v and the LN1 outputs over the (cropped) window, as the non-causal forward
    computes them. Fields and shapes as mof.runtime.State."""
    ids = np.asarray(ids)
    x = _embed(w, ids)                                       # [B, T, E]
    rnn_h, h = [], x
    for gru in w.rnn_grus:
        states = gru(h)                                      # [B, T, U]
        rnn_h.append(states[:, -1])
        h = w.lnl(states)
    sums: list = []
    _transformer(w, config, x, causal=False, sums=sums)
    L, B = len(sums), ids.shape[0]
    stack = lambda i, shape: (np.stack([s[i] for s in sums]) if L else np.zeros((0, B) + shape))
    return {
        "emb_h": w.emb_gru(w.emb[ids])[:, -1],              # [B, E]
        "router_h": w.router_gru(x)[:, -1],                 # [B, R]
        "rnn_h": np.stack(rnn_h),                           # [n, B, U]
        "attn_z": stack(0, (config.num_heads, config.head_dim)),    # [L, B, H, D]
        "attn_u": stack(1, (config.num_heads, config.head_dim)),    # [L, B, H, D]
        "thought_c": stack(2, (config.embed_dim,)),                  # [L, B, E]
    }
