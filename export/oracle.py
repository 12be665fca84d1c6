"""Oracle 3: an independent pure-numpy T6 / T7 network (docs/network.md).

``forward`` is the reference network exactly as xiaothink's TF code computes it
(non-causal, Wt crop, end padding); ``stream_forward`` *defines* the stream
decoder: the same weights, everything causal (running sums of phi(k) and v,
running mean for the thought vector, Pos[p], router state at p).
A T7 network (``config.family``) has a second transformer expert, a three-way router and a
temperature expert dividing the logits; t7_cpu_standard has no embedding GRU.
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
class Transformer:
    """One transformer expert (MemoryEnhancedTransformer_dense[_t7])."""
    pos: np.ndarray                  # [P, E] position table
    blocks: tuple                    # its Blocks
    out: Dense                       # [E, U]


@dataclass(frozen=True, eq=False)
class Temperature:
    """T7's temperature expert: max(softplus(LN(GRU(x)) W + b) + bias, 1e-6)."""
    gru: GRU                         # E -> R
    norm: Norm                       # eps 1e-3
    dense: Dense                     # [R, 1], softplus
    bias: float                      # temp_bias


@dataclass(frozen=True, eq=False)
class Weights:
    emb: np.ndarray                  # [V, E] token embedding
    emb_gru: GRU | None              # E -> E (None: a bare embedding, t7_cpu_standard)
    emb_dense: Dense | None          # [E, E], relu
    bn: tuple | None                 # (gamma, beta, moving_mean, moving_variance), each [E]
    router_gru: GRU                  # E -> R
    router_norm: Norm                # eps 1e-3
    router_dense: Dense              # [R, experts], softmax
    temperature: Temperature | None  # T7 only
    rnn_grus: tuple                  # n GRUs: E -> U, then U -> U
    lnl: Norm                        # ONE LayerNorm after every RNN-expert GRU, eps 1e-6
    transformers: tuple              # Transformer experts: experts/1 (and T7's experts/2)
    expert_norms: tuple              # one Norm [U] per expert, eps 1e-3
    combined_norm: Norm              # eps 1e-3
    head: Dense                      # [U, V]


def load_weights(prefix: str | Path, config: ModelConfig) -> Weights:
    """Read every tensor the network uses from a TF checkpoint (as float64)."""
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

    def block(p):
        return Block(q=dense(p + "lmha/query_dense"), k=dense(p + "lmha/key_dense"),
                     v=dense(p + "lmha/value_dense"), combine=dense(p + "lmha/combine_heads"),
                     attn=dense(p + "attn_dense"), ln1=norm(p + "layernorm1", 1e-6),
                     ln2=norm(p + "layernorm2", 1e-6),
                     thought1=dense(p + "thought_processor/layer_with_weights-0"),
                     thought2=dense(p + "thought_processor/layer_with_weights-1"),
                     alpha=float(get(p + "alpha")[0]),
                     ffn1=dense(p + "ffn/layer_with_weights-0"), ffn2=dense(p + "ffn/layer_with_weights-1"))

    def transformer(j, layers):
        p = f"{_MOE}experts/{j}/"
        return Transformer(pos=get(p + "position_embedding/position_embedding/embeddings"),
                           blocks=tuple(block(f"{p}transformer_blocks/{i}/") for i in range(layers)),
                           out=dense(p + "dense"))

    has_gru = config.embed_gru
    return Weights(
        emb=get(_EMB + "token_emb/embeddings"),
        emb_gru=gru(_EMB + "lstm1") if has_gru else None,
        emb_dense=dense(_EMB + "dense") if has_gru else None,
        bn=tuple(get(_EMB + "bn/" + n) for n in ("gamma", "beta", "moving_mean", "moving_variance"))
        if has_gru else None,
        router_gru=gru(_MOE + "router_gru"), router_norm=norm(_MOE + "router_gru_norm", 1e-3),
        router_dense=dense(_MOE + "router_dense"),
        temperature=Temperature(gru(_MOE + "temp_expert_gru"), norm(_MOE + "temp_expert_norm", 1e-3),
                                dense(_MOE + "temp_expert_dense"), float(get(_MOE + "temp_bias")[0]))
        if config.temperature else None,
        rnn_grus=tuple(gru(f"{_RNN}context_encoders/{i}") for i in range(config.rnn_layers)),
        lnl=norm(_RNN + "lnl", 1e-6),
        transformers=tuple(transformer(j, layers) for j, (layers, _) in enumerate(config.transformers, start=1)),
        expert_norms=tuple(norm(f"{_MOE}expert_norms/{i}", 1e-3) for i in range(config.num_experts)),
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


def _softplus(x):
    return np.logaddexp(0.0, x)


def _embed(w: Weights, ids):                         # ids [B, T] -> x [B, T, E]
    e = w.emb[ids]                                   # [B, T, E]
    if w.emb_gru is None:                            # a bare embedding (t7_cpu_standard)
        return e
    d = np.maximum(w.emb_dense(w.emb_gru(e)), 0.0)   # [B, T, E]
    gamma, beta, mean, var = w.bn
    return (d - mean) / np.sqrt(var + 1e-3) * gamma + beta + e


def _rnn_expert(w: Weights, x):                      # [B, T, E] -> [B, T, U]
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


def _transformer(tr: Transformer, norm: Norm, config: ModelConfig, x, causal, sums=None):   # [B, T, E] -> normed [B, T, U]
    T = x.shape[1]
    if T > tr.pos.shape[0]:
        raise ValueError(f"sequence length {T} exceeds the position table ({tr.pos.shape[0]})")
    y = x + tr.pos[:T]                                # [B, T, E]
    if not causal:
        y = y[:, max(0, T - config.trans_window):]   # [B, T', E] crop to the last Wt positions
    for blk in tr.blocks:
        y = _block(blk, config.num_heads, y, causal, sums)
    out = norm(tr.out(y))                             # [B, T', U]
    pad = T - out.shape[1]                            # zero-pad AT THE END (after the norm)
    return np.pad(out, ((0, 0), (0, pad), (0, 0)))   # [B, T, U]


def _final(gru: GRU, x, causal):
    """A GRU read for one value per sequence: its state after the last position (the reference),
    or at every position (causal)."""
    r = gru(x)                                       # [B, T, N] all states
    return r if causal else r[:, -1:]                # [B, T or 1, N]


def _logits(w: Weights, config: ModelConfig, ids, causal):
    ids = np.asarray(ids)
    x = _embed(w, ids)                                       # [B, T, E]
    gate = _softmax(w.router_dense(w.router_norm(_final(w.router_gru, x, causal))))   # [B, T or 1, experts]
    outs = [w.expert_norms[0](_rnn_expert(w, x))]            # [B, T, U]
    outs += [_transformer(tr, w.expert_norms[j], config, x, causal)
             for j, tr in enumerate(w.transformers, start=1)]
    m = w.combined_norm(sum(gate[..., j:j + 1] * o for j, o in enumerate(outs)))   # [B, T, U]
    logits = w.head(m)                                       # [B, T, V]
    if w.temperature is not None:                            # T7: logits / max(softplus(...) + bias, 1e-6)
        t = w.temperature
        temp = _softplus(t.dense(t.norm(_final(t.gru, x, causal)))) + t.bias      # [B, T or 1, 1]
        logits = logits / np.maximum(temp, 1e-6)
    return logits


def forward(weights: Weights, config: ModelConfig, ids) -> np.ndarray:
    """The reference network, non-causal, as TF computes it: ids [B, T] -> logits [B, T, V]."""
    return _logits(weights, config, ids, causal=False)


def stream_forward(weights: Weights, config: ModelConfig, ids) -> np.ndarray:
    """The stream definition (docs/network.md, "Stream mode"), causal at every position: ids [B, T] -> logits [B, T, V]."""
    return _logits(weights, config, ids, causal=True)


def window_state(w: Weights, config: ModelConfig, ids) -> dict[str, np.ndarray]:
    """The stream state after reading ``ids`` [B, T] with the reference's (window) semantics,
    what the chunk graph must output: every GRU's final state, and per transformer block (over
    every transformer expert, in order) the sums of phi(k), v and the LN1 outputs over the
    (cropped) window, as the non-causal forward computes them. Fields and shapes as
    mof.runtime.State."""
    ids = np.asarray(ids)
    x = _embed(w, ids)                                       # [B, T, E]
    rnn_h, h = [], x
    for gru in w.rnn_grus:
        states = gru(h)                                      # [B, T, U]
        rnn_h.append(states[:, -1])
        h = w.lnl(states)
    sums: list = []
    for j, tr in enumerate(w.transformers, start=1):
        _transformer(tr, w.expert_norms[j], config, x, causal=False, sums=sums)
    L, B = len(sums), ids.shape[0]
    stack = lambda i, shape: (np.stack([s[i] for s in sums]) if L else np.zeros((0, B) + shape))
    out = {}
    if w.emb_gru is not None:
        out["emb_h"] = w.emb_gru(w.emb[ids])[:, -1]          # [B, E]
    out["router_h"] = w.router_gru(x)[:, -1]                 # [B, R]
    if w.temperature is not None:
        out["temp_h"] = w.temperature.gru(x)[:, -1]          # [B, R]
    out.update({
        "rnn_h": np.stack(rnn_h),                            # [n, B, U]
        "attn_z": stack(0, (config.num_heads, config.head_dim)),    # [blocks, B, H, D]
        "attn_u": stack(1, (config.num_heads, config.head_dim)),    # [blocks, B, H, D]
        "thought_c": stack(2, (config.embed_dim,)),                  # [blocks, B, E]
    })
    return out
