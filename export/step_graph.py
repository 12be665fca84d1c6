"""The stream decoder's step graph, written directly in ONNX from the checkpoint's weights.

    logits, state_out = step(input_ids [B, C], position [B], state)

It is the causal form of what xiaothink's code computes (docs/network.md, "Stream mode"), for a T6
or a T7 network (the config's family fields, not a separate builder): the GRUs carry their hidden
states; each transformer block (of every transformer expert) carries the running sums
z = Σ phi(k), u = Σ v (the code's attention is (q·z)/(q·z+1e-6) · u, docs/network.md) and
c = Σ o of its LN1 outputs (the thought vector uses their running mean). A chunk of C >= 1
tokens is processed in parallel where the math allows (GRU ops over the chunk, running sums via
CumSum); logits are for its last token.

The chunk graph (``build_chunk_graph``) is the same network with the reference's own
(window) semantics, from a zero state:

    logits, state_out = chunk(input_ids [B, K])

each layer's sums are taken over the whole chunk and applied at every position of it, the
transformer sees only the last Wt positions and contributes nothing to the last position
when K > Wt (xiaothink's end padding) — so its logits are exact mode's for that window, and
its state (GRU states, z, u and c summed over the window) is what the step graph continues
from. The stream decoder refills with it (docs/bundle-format.md, "The refill rule").

The decode graph (``build_decode_graph``) holds both, chosen per call by its ``refill`` input.
The three differ only in a few places, named by ``Semantics``; the network itself is written
block by block as the numpy oracle computes it (oracle.py: embedding, router, RNN expert,
transformer blocks, mix, head), and its nodes are named by that path (``/embed``, ``/router``,
``/temperature``, ``/rnn/gru.<i>``, ``/transformer/layers.<l>/attn``, ``/mix``, ``/lm_head``: a
profile or Netron reads like the network; GraphBuilder.scope).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mof.runtime.config import ModelConfig
from mof.runtime.contract import INPUT_IDS, LOGITS, ONNX_OPSET, POSITION, REFILL_INPUT, STATE_IN, STATE_OUT, graph_io
from mof.runtime.state import state_shapes

from .onnx_layers import LayerGraphBuilder as GraphBuilder

EPS_KERAS = 1e-3      # Keras LayerNormalization / BatchNormalization default
EPS_T6 = 1e-6         # the RNN expert's and the transformer blocks' LayerNorms
ATTN_EPS = 1e-6       # denominator q·z + 1e-6
TEMP_MIN = 1e-6       # T7: the temperature's floor (MoEModel_t7.apply_temperature)
END = 2**62           # a Slice bound past the end of any axis

L0 = "layer_with_weights-0"     # the embedding block's variables
L1 = "layer_with_weights-1"     # the mixture's: router, experts, norms, head


@dataclass(frozen=True)
class Semantics:
    """What differs between the graphs written from one network; everything else is shared."""
    kind: str       # "step", "chunk" or "decode": the graph's name and producer tag
    causal: bool    # the stream's: state and position are inputs, sums run (CumSum) from the carried state
    window: bool    # the reference's: sums over the whole window, the Wt crop and the end padding
    # both (decode): the refill input chooses the semantics per call: Where for the few ops outside
    # the blocks (the crop, the end padding), two Ifs per transformer block (_Net.branch)

    @property
    def refill(self) -> bool:
        """The graph takes the refill input (bool []) that chooses between the two semantics."""
        return self.causal and self.window


STEP = Semantics("step", causal=True, window=False)
CHUNK = Semantics("chunk", causal=False, window=True)      # from a zero state, positions from 0
DECODE = Semantics("decode", causal=True, window=True)


def build_step_graph(config: ModelConfig, get: Callable[[str], np.ndarray]):
    """``get(name)`` returns a checkpoint variable (name without the ATTRIBUTES suffix)."""
    return _build(config, get, STEP)


def build_chunk_graph(config: ModelConfig, get: Callable[[str], np.ndarray]):
    """The exact-semantics chunk graph: ids [B, K] from a zero state -> last logits + state."""
    return _build(config, get, CHUNK)


def build_decode_graph(config: ModelConfig, get: Callable[[str], np.ndarray]):
    """Step and chunk in one graph: the step graph's inputs + ``refill`` (see the module doc)."""
    return _build(config, get, DECODE)


def _build(config: ModelConfig, get: Callable[[str], np.ndarray], sem: Semantics):
    """The network block by block (as oracle._logits), under ``sem``. Everything runs time-major
    ([C, B, ...]): the GRU ops want it, and a layer's state slice [1, B, ...] then broadcasts over
    the chunk with no reshaping."""
    net = _Net(config, get, sem)
    g = net.g                                  # node names: the module path (GraphBuilder.scope)
    with g.scope("embed"):
        x_t, emb_h = _embed(net, g.op("Transpose", [INPUT_IDS], perm=[1, 0]))   # [C, B] -> [C, B, E], [B, E]
    with g.scope("router"):
        gate, router_h = _router(net, x_t)                                  # [B, experts], [B, R]
    with g.scope("temperature"):
        temperature, temp_h = _temperature(net, x_t) if config.temperature else (None, None)  # [B, 1], [B, R]
    with g.scope("rnn"):
        rnn_out, rnn_h = _rnn_expert(net, x_t)                              # [B, U], [n, B, U]
    shared = _shared(net)
    outs, sums, first = [rnn_out], [], 0
    for j, (layers, _) in enumerate(config.transformers, start=1):
        with g.scope("transformer" if len(config.transformers) == 1 else f"transformer.{j - 1}"):
            outs.append(_transformer(net, shared, j, range(first, first + layers), x_t, sums))   # [B, U]
        first += layers
    with g.scope("mix"):
        mixed = _mix(net, shared, outs, gate)                               # [B, U]
    with g.scope("lm_head"):
        logits = _head(net, mixed, temperature)                             # [B, V]
    state = {"emb_h": emb_h, "router_h": router_h, "temp_h": temp_h, "rnn_h": rnn_h}
    return _model(net, logits, {k: v for k, v in state.items() if v is not None}, sums)


class _Net:
    """One graph being written: its builder, the network's config and weights, its semantics."""

    def __init__(self, config: ModelConfig, get: Callable[[str], np.ndarray], sem: Semantics):
        self.c, self.get, self.sem = config, get, sem
        self.g = GraphBuilder()
        self.zero = self.i64([0])

    def f32(self, name: str) -> np.ndarray:
        return np.asarray(self.get(name), np.float32)

    def i64(self, value) -> str:
        return self.g.const(value, dtype=np.int64)

    def dense(self, x: str, prefix: str, hint: str) -> str:
        return self.g.dense(x, self.f32(f"{prefix}/kernel"), self.f32(f"{prefix}/bias"), hint)

    def norm(self, x: str, prefix: str, eps: float, hint: str) -> str:
        return self.g.layer_norm(x, self.f32(f"{prefix}/gamma"), self.f32(f"{prefix}/beta"), eps, hint)

    def choose(self, window: Callable[[], str], causal: Callable[[], str]) -> str:
        """The value under the graph's semantics: the decode graph writes both, Where(refill, ...)."""
        if not self.sem.causal:
            return window()
        if not self.sem.window:
            return causal()
        return self.g.op("Where", [REFILL_INPUT, window(), causal()])

    def branch(self, hint: str, window: Callable[[GraphBuilder], object],
               causal: Callable[[GraphBuilder], object]):
        """Like ``choose``, for ops that only one semantics needs: each callable writes its ops
        with the builder it is given and returns a value name or a tuple of them; the decode
        graph puts them in the two branches of an If on ``refill``, so a step runs the running
        semantics' ops alone and a refill the window's (the branches read the enclosing graph's
        values; every weight product stays outside, where onnxruntime prepacks it once)."""
        if not self.sem.causal:
            return window(self.g)
        if not self.sem.window:
            return causal(self.g)
        from onnx import TensorProto, helper
        node, branches = self.g.name(f"{hint}/If"), {}
        for side, fn in (("then", window), ("else", causal)):        # then: refill, the window's
            sub = GraphBuilder(f"{node}/{side}")
            outs = fn(sub)
            outs = outs if isinstance(outs, tuple) else (outs,)
            declared = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs]
            branches[side] = sub.graph(sub.prefix, [], declared)
        outs = [f"{node}/output_{i}" for i in range(len(branches["then"].output))]
        self.g.op_named("If", [REFILL_INPUT], outs, node=node, then_branch=branches["then"],
                        else_branch=branches["else"])
        return outs[0] if len(outs) == 1 else outs

    def initial(self, field: str, index: int | None = None) -> str:
        """[B, N]: a GRU's initial state — the carried one (row ``index`` of a stacked field), or
        zeros without state inputs."""
        g = self.g
        if self.sem.causal:
            return state_in(field) if index is None else g.op("Gather", [state_in(field), self.i64(index)], "h0", axis=0)
        from onnx import TensorProto, helper
        with g.scope("h0"):
            batch = g.op("Gather", [g.op("Shape", [INPUT_IDS]), self.i64([0])], axis=0)     # [1] = B
            n = state_shapes(self.c)[field][-1]
            return g.op("ConstantOfShape", [g.op("Concat", [batch, self.i64([n])], axis=0)],
                        value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))

    def gru(self, x_tbi: str, h0_bu: str, prefix: str, hint: str, sequence: bool = True):
        """-> (Y [T, B, U], h_T [B, U]); ``sequence=False``: h_T alone (Y is None, the GRU writes
        none — int8's rewrite then keeps no per-step outputs in its Loop)"""
        g = self.g
        with g.scope(hint):
            y, y_h = g.keras_gru(x_tbi, g.op("Unsqueeze", [h0_bu, self.zero], "h0"), *gru_weights(self.get, prefix),
                                 "", sequence=sequence)
            return (g.op("Squeeze", [y, self.i64([1])], "y") if sequence else None), g.op("Squeeze", [y_h, self.zero], "h")


def _embed(net: _Net, ids_t: str) -> tuple[str, str | None]:
    """ids [C, B] -> (x [C, B, E], the embedding GRU's state [B, E]): e = Emb[ids]; GRU over the
    chunk; x = BN(relu(g Wd + bd)) + e (a bare embedding, x = e and no state: t7_cpu_standard)"""
    g = net.g
    e_t = g.op("Gather", [g.const(net.f32(f"{L0}/token_emb/embeddings"), "tokens/table"), ids_t], "tokens",
               axis=0)                                                                   # [C, B, E]
    if not net.c.embed_gru:
        return e_t, None
    y, h = net.gru(e_t, net.initial("emb_h"), f"{L0}/lstm1", "gru")                      # [C, B, E], [B, E]
    d = g.op("Relu", [net.dense(y, f"{L0}/dense", "dense")], "dense")                     # [C, B, E]
    scale, shift = batchnorm_affine(net.get, f"{L0}/bn")
    bn = g.op("Add", [g.op("Mul", [d, g.const(scale, "bn/scale")], "bn"), g.const(shift, "bn/shift")], "bn")
    return g.op("Add", [bn, e_t], "residual"), h


def _router(net: _Net, x_t: str) -> tuple[str, str]:
    """x [C, B, E] -> (softmax(LN(r) Wr + br) [B, experts], r [B, R]), r the router GRU's final
    state (one weight per expert and sequence)"""
    _, r = net.gru(x_t, net.initial("router_h"), f"{L1}/router_gru", "gru", sequence=False)  # [B, R]
    n = net.norm(r, f"{L1}/router_gru_norm", EPS_KERAS, "ln")
    return net.g.op("Softmax", [net.dense(n, f"{L1}/router_dense", "dense")], axis=-1), r


def _temperature(net: _Net, x_t: str) -> tuple[str, str]:
    """T7's temperature expert: x [C, B, E] -> (max(softplus(LN(t) Wt + bt) + bias, 1e-6) [B, 1],
    t [B, R]), t its GRU's final state"""
    g = net.g
    _, h = net.gru(x_t, net.initial("temp_h"), f"{L1}/temp_expert_gru", "gru", sequence=False)  # [B, R]
    t = net.norm(h, f"{L1}/temp_expert_norm", EPS_KERAS, "ln")
    t = g.op("Softplus", [net.dense(t, f"{L1}/temp_expert_dense", "dense")])                   # [B, 1]
    return g.op("Max", [g.op("Add", [t, g.const(net.f32(f"{L1}/temp_bias"), "bias")], "bias"),
                        g.const(np.float32(TEMP_MIN))], "floor"), h


def _rnn_expert(net: _Net, x_t: str) -> tuple[str, str]:
    """x [C, B, E] -> (h at the last position [B, U], every GRU's final state [n, B, U]):
    h = LNl(GRU_i(h)) for each of n GRUs (one LayerNorm shared). Past the last GRU only the last
    position is read, so it writes no sequence and its LayerNorm sees that position alone."""
    g, n = net.g, net.c.rnn_layers
    h, states = x_t, []
    for i in range(n):
        last = i == n - 1
        y, h_T = net.gru(h, net.initial("rnn_h", i), f"{L1}/experts/0/context_encoders/{i}", f"gru.{i}",
                         sequence=not last)                                 # [C, B, U] (or None), [B, U]
        h_T = g.op("Unsqueeze", [h_T, net.zero], f"gru.{i}")                # [1, B, U]
        h = net.norm(h_T if last else y, f"{L1}/experts/0/lnl", EPS_T6, f"ln.{i}")   # [C or 1, B, U]
        states.append(h_T)
    rnn_h = g.op("Concat", states, "state", axis=0)                         # [n, B, U]
    return g.op("Gather", [h, net.i64(-1)], "last", axis=0), rnn_h


@dataclass(frozen=True)
class _Shared:
    """What every transformer expert and block of one graph reads, written once before them."""
    length: str             # [] int64: C, the chunk's length
    pos: str                # int64 positions: p + t [C, B] (without state inputs t [C, 1])
    heads: str              # [4] int64 = [0, 0, H, dh]: Reshape [C, B, E] -> [C, B, H, dh]
    merge: str              # [3] int64 = [0, 0, E]: Reshape [C, B, H, dh] -> [C, B, E]
    carried: dict           # "attn_z", "attn_u", "thought_c" -> per block its [1, B, ...] state row (or None)


def _shared(net: _Net) -> _Shared:
    g, c, i64 = net.g, net.c, net.i64
    with g.scope("positions"):
        length = g.op("Gather", [g.op("Shape", [INPUT_IDS]), i64(1)], "length", axis=0)
        t = g.op("Range", [i64(0), length, i64(1)])                         # [C]
        pos = g.op("Unsqueeze", [t, i64([1])])                              # [C, 1]
        if net.sem.causal:
            pos = g.op("Add", [pos, g.op("Unsqueeze", [POSITION, net.zero])])   # [C, B]
    heads, merge = i64([0, 0, c.num_heads, c.head_dim]), i64([0, 0, c.embed_dim])
    with g.scope("state"):
        carried = {field: _per_block(net, field) for field in ("attn_z", "attn_u", "thought_c")}
    return _Shared(length, pos, heads, merge, carried)


def _per_block(net: _Net, field: str) -> list:
    """state [blocks, B, ...] -> one slice [1, B, ...] per block (one Split for all); Nones
    without state inputs"""
    n = net.c.blocks
    if not net.sem.causal or not n:
        return [None] * n
    parts = net.g.op("Split", [state_in(field), net.i64([1] * n)], field, axis=0, outputs=n)
    return [parts] if n == 1 else parts


def _sums(s: GraphBuilder, v: str, carried: str | None, window: bool, hint: str) -> str:
    """Σ over the chunk of v [C, B, ...] (ops written with builder ``s``, named ``hint``): the whole window's
    [1, B, ...] (+ the state fed, zero when refilling), or running [C, B, ...] from the carried
    state."""
    running = s.op("CumSum", [v, s.const(0, dtype=np.int64)], hint)                    # [C, B, ...]
    if window:
        # the last running sum is ReduceSum's over the chunk, the same additions in the same
        # order (bit for bit), at a quarter of its time (onnxruntime's ReduceSum over the first
        # axis: 84 us for [113, 512], CumSum and Slice 22 us, 2 threads, AVX2-only AMD EPYC)
        total = s.op("Slice", [running, s.const([-1], dtype=np.int64), s.const([END], dtype=np.int64),
                               s.const([0], dtype=np.int64)], hint)
        return total if carried is None else s.op("Add", [total, carried], hint)  # [1, B, ...]
    return s.op("Add", [running, carried], hint)


def _window_count(net: _Net, y: str) -> str:
    """[1, 1, 1] float: the cropped window's length C', the count of the window semantics' mean."""
    from onnx import TensorProto
    g = net.g
    with g.scope("window_count"):
        length = g.op("Cast", [g.op("Shape", [y], start=0, end=1)], to=TensorProto.FLOAT)
        return g.op("Reshape", [length, net.i64([1, 1, 1])])


def _transformer(net: _Net, sh: _Shared, j: int, rows: range, x_t: str, sums: list) -> str:
    """Transformer expert j (T6: experts/1; T7: experts/1 and experts/2), its blocks the state's
    ``rows``: x [C, B, E] -> its output at the last position [B, U]; each block's sums are
    appended to ``sums``. y = x + Pos_j[p + t]; the window semantics crop y to the last Wt
    positions (Pos added before; the decode graph crops only when it refills)."""
    from onnx import TensorProto
    g, i64 = net.g, net.i64
    T = f"{L1}/experts/{j}"
    table = g.const(net.f32(f"{T}/position_embedding/position_embedding/embeddings"), "positions/table")
    y = g.op("Add", [x_t, g.op("Gather", [table, sh.pos], "positions", axis=0)], "positions")   # [C, B, E]
    # the running mean's count p+t+1 [C, B, 1] (written in the chunk graph too, where nothing reads it)
    with g.scope("running_count"):
        running_count = g.op("Unsqueeze", [g.op("Cast", [g.op("Add", [sh.pos, i64(1)])], to=TensorProto.FLOAT),
                                           i64([2])])
    if net.sem.window:
        start = net.choose(lambda: i64([-net.c.trans_window]), lambda: i64([-END]))
        y = g.op("Slice", [y, start, i64([END]), net.zero], "crop")         # [C', B, E]
    counts = (_window_count(net, y) if net.sem.window else None, running_count)   # window's, running
    for l, b in enumerate(rows):
        with g.scope(f"layers.{l}"):
            y = _block(net, sh, f"{T}/transformer_blocks/{l}", b, y, counts, b == rows[-1], sums)
    y_last = g.op("Gather", [y, i64(-1)], "last", axis=0)                   # [B, E]
    return net.dense(y_last, f"{T}/dense", "out")                           # [B, U]


def _block(net: _Net, sh: _Shared, P: str, b: int, y: str, counts: tuple, last: bool, sums: list) -> str:
    """One transformer block (variables under P, state row b): y [C, B, E] -> [C, B, E]; appends
    its (Σ phi(k), Σ v, Σ o) to ``sums``; ``counts``: the thought mean's count, the window's [1, 1, 1]
    (None without window semantics) and the running one [C, B, 1]. The expert's ``last`` block:
    [1, B, E], as past it only the last position is read (its thought vector, FFN and LN2 for that
    position alone; the state keeps the sums whole)."""
    g = net.g
    with g.scope("attn"):
        z, u, o, csum, mean = _attention(net, sh, P, b, y, counts)         # o, mean [C or 1, B, E]
    if last:
        rows = lambda v: g.op("Slice", [v, net.i64([-1]), net.i64([END]), net.zero], "last")
        o, mean = rows(o), rows(mean)                                       # [1, B, E]
    # thought = alpha * dense2(gelu(dense1(mean))): alpha folded into dense2
    alpha = net.f32(f"{P}/alpha").astype(np.float64)
    t1, t2 = (f"{P}/thought_processor/layer_with_weights-{i}" for i in (0, 1))
    with g.scope("thought"):
        thought = g.dense(g.gelu(net.dense(mean, t1, "dense1")), (net.f32(f"{t2}/kernel") * alpha).astype(np.float32),
                          (net.f32(f"{t2}/bias") * alpha).astype(np.float32), "dense2")
    o = g.op("Add", [o, thought], "thought")
    with g.scope("ffn"):
        ffn = g.gelu(net.dense(o, f"{P}/ffn/layer_with_weights-0", "dense1"))
        ffn = net.dense(ffn, f"{P}/ffn/layer_with_weights-1", "dense2")
    sums.append((z, u, csum))
    return net.norm(g.op("Add", [o, ffn], "ffn"), f"{P}/layernorm2", EPS_T6, "ln2")


def _attention(net: _Net, sh: _Shared, P: str, b: int, y: str, counts: tuple) -> tuple:
    """The block's linear attention on y [C, B, E], its residual and LN1, and the thought mean's
    input -> (z, u [C or 1, B, H, dh], o = LN1(y + attention) [C, B, E], c = Σ o [C or 1, B, E],
    the mean c / count). The attention is (q·z)/(q·z + 1e-6) · u with z = Σ phi(k), u = Σ v,
    then combine_heads and attn_dense (folded into one: Wo, bo). With running sums each position
    has its own u, and the output is ((f_t · u_t) Wo + bo) row by row, f = (q·z)/(q·z + 1e-6)
    per head; the window semantics apply one u at every position, so Σ_h f_th (u_h Wo) + bo needs
    Wo on H rows only (u_h alone in row h), mixed per position by f [C, H] · [H, E] (the same sums
    in another order). The decode graph writes what differs in two Ifs on ``refill`` (``_Net.branch``)
    on either side of the one MatMul with Wo: before it the sums, f and Wo's rows; after it the
    output, LN1, c and the mean."""
    g, H = net.g, net.c.num_heads
    q, k, v = _qkv(net, sh, P, y)                                           # [C, B, H, dh] each
    carried = {f: sh.carried[f][b] for f in ("attn_z", "attn_u", "thought_c")}
    eps, wo, bo, mask, gamma, beta = _attention_consts(net, P)

    def before(s: GraphBuilder, window: bool) -> tuple:
        """-> z, u, f [C, B, H, 1], Wo's rows: H rows u_h (window) or f_t · u_t (running)"""
        z, u = (_sums(s, x, carried[f], window, n) for x, f, n in ((k, "attn_z", "z"), (v, "attn_u", "u")))
        qz = s.op("ReduceSum", [s.op("Mul", [q, z], "qz"), s.const([-1], dtype=np.int64)], "qz", keepdims=1)
        f = s.op("Div", [qz, s.op("Add", [qz, eps], "f")], "f")             # [C, B, H, 1]
        rows = (s.op("Mul", [s.op("Reshape", [u, sh.merge], "rows"), mask], "rows") if window   # [H, B, E]
                else s.op("Reshape", [s.op("Mul", [f, u], "rows"), sh.merge], "rows"))          # [C, B, E]
        return z, u, f, rows

    z, u, f, rows = net.branch("rows", lambda s: before(s, True), lambda s: before(s, False))
    out = g.op("MatMul", [rows, wo], "out")

    def after(s: GraphBuilder, window: bool) -> tuple:
        """-> o = LN1(y + attention), c = Σ o, the mean c / count"""
        if window:                                                          # Σ_h f_th (u_h Wo)
            heads = s.const([0, 0, H], dtype=np.int64)                      # the branch's own: bench/macs.py reads it
            fh = s.op("Transpose", [s.op("Reshape", [f, heads], "mix")], "mix", perm=[1, 0, 2])        # [B, C, H]
            mixed = s.op("MatMul", [fh, s.op("Transpose", [out], "mix", perm=[1, 0, 2])], "mix")      # [B, C, E]
            attn = s.op("Transpose", [mixed], "mix", perm=[1, 0, 2])
        else:
            attn = out
        o = s.op("LayerNormalization", [s.op("Add", [y, s.op("Add", [attn, bo], "out")], "residual"), gamma, beta],
                 "ln1", axis=-1, epsilon=float(EPS_T6))                     # [C, B, E]
        csum = _sums(s, o, carried["thought_c"], window, "c")               # [C or 1, B, E]
        return o, csum, s.op("Div", [csum, counts[0] if window else counts[1]], "mean")

    o, csum, mean = net.branch("ln1", lambda s: after(s, True), lambda s: after(s, False))
    return z, u, o, csum, mean


def _qkv(net: _Net, sh: _Shared, P: str, y: str) -> tuple[str, str, str]:
    """y [C, B, E] -> q = phi(y Wq + bq), k = phi(y Wk + bk), v = y Wv + bv [C, B, H, dh] each: one
    MatMul over the concatenated kernels (one activation quantization in int8), phi = elu + 1
    applied to q and k together."""
    g, c, i64 = net.g, net.c, net.i64
    H, dh, E = c.num_heads, c.head_dim, c.embed_dim
    names = ("lmha/query_dense", "lmha/key_dense", "lmha/value_dense")
    qkv = g.dense(y, np.concatenate([net.f32(f"{P}/{n}/kernel") for n in names], 1),
                  np.concatenate([net.f32(f"{P}/{n}/bias") for n in names]), "qkv")           # [C, B, 3E]
    qk, v = g.op("Split", [qkv, i64([2 * E, E])], "qkv", axis=-1, outputs=2)   # [C, B, 2E], [C, B, E]
    phi = g.op("Add", [g.op("Elu", [qk], "phi", alpha=1.0), g.const(1.0)], "phi")
    q, k = g.op("Split", [g.op("Reshape", [phi, i64([0, 0, 2 * H, dh])], "qk"), i64([H, H])], "qk", axis=2,
                outputs=2)                                                  # [C, B, H, dh] each
    return q, k, g.op("Reshape", [v, sh.heads], "v")


def _attention_consts(net: _Net, P: str) -> tuple:
    """The block's attention constants: the denominator's eps, Wo [E, E] and bo [E] (combine_heads
    then attn_dense, two linear maps in a row folded into one in float64), the head rows [H, 1, E]
    (u_h alone in row h; None without window semantics), LN1's gamma and beta."""
    g, H, dh = net.g, net.c.num_heads, net.c.head_dim
    w_ = lambda n: net.f32(f"{P}/{n}/kernel").astype(np.float64)
    b_ = lambda n: net.f32(f"{P}/{n}/bias").astype(np.float64)
    eps = g.const(ATTN_EPS)
    wc, bc, wa, ba = w_("lmha/combine_heads"), b_("lmha/combine_heads"), w_("attn_dense"), b_("attn_dense")
    wo = g.const((wc @ wa).astype(np.float32), "out/kernel")
    bo = g.const((bc @ wa + ba).astype(np.float32), "out/bias")
    mask = (g.const(np.kron(np.eye(H, dtype=np.float32), np.ones((1, dh), np.float32))[:, None, :],
                    "head_rows") if net.sem.window else None)               # [H, 1, E]
    gamma, beta = (g.const(net.f32(f"{P}/layernorm1/{n}"), f"ln1/{n}") for n in ("gamma", "beta"))
    return eps, wo, bo, mask, gamma, beta


def _mix(net: _Net, sh: _Shared, outs: list[str], gate: str) -> str:
    """The experts' outputs [B, U] each (last position) -> LN(Σ_i gate_i · LN_i(out_i)) [B, U]."""
    from onnx import TensorProto
    g, i64 = net.g, net.i64
    mixed = None
    for i, out in enumerate(outs):
        n = net.norm(out, f"{L1}/expert_norms/{i}", EPS_KERAS, f"norm.{i}")  # [B, U]
        if net.sem.window and i:
            # xiaothink pads the cropped transformer output AT THE END: past Wt, the last position
            # gets no transformer contribution (n = 0)
            inside = lambda: g.op("Cast", [g.op("LessOrEqual", [sh.length, i64(net.c.trans_window)], "end_padding")],
                                  "end_padding", to=TensorProto.FLOAT)
            n = g.op("Mul", [n, net.choose(inside, lambda: g.const(np.float32(1.0)))], "end_padding")
        term = g.op("Mul", [n, g.op("Slice", [gate, i64([i]), i64([i + 1]), i64([1])], f"gate.{i}")], f"gate.{i}")
        mixed = term if mixed is None else g.op("Add", [mixed, term], "sum")
    return net.norm(mixed, f"{L1}/combined_norm", EPS_KERAS, "ln")


def _head(net: _Net, m: str, temperature: str | None) -> str:
    """m [B, U] -> logits [B, V] (T7: divided by the temperature [B, 1])."""
    logits = net.dense(m, f"{L1}/next_token_predictor", "")
    return logits if temperature is None else net.g.op("Div", [logits, temperature], "temperature")


def _stacked_sums(net: _Net, sums: list) -> dict[str, str]:
    """Every block's (z, u, c) sums [C or 1, B, ...] -> the state's last-position rows
    [blocks, B, ...], all blocks at once ([C or 1, blocks*B, ...] first)."""
    g, c = net.g, net.c
    stack = lambda xs, shape, hint: g.op("Reshape", [g.op("Gather", [g.op("Concat", list(xs), hint, axis=1),
                                                                     net.i64(-1)], hint, axis=0), net.i64(shape)], hint)
    z, u, cs = zip(*sums)
    heads = [c.blocks, -1, c.num_heads, c.head_dim]
    with g.scope("state"):
        return {"attn_z": stack(z, heads, "attn_z"), "attn_u": stack(u, heads, "attn_u"),
                "thought_c": stack(cs, [c.blocks, -1, c.embed_dim], "thought_c")}


def _model(net: _Net, logits: str, state: dict[str, str], sums: list):
    """The graph's outputs (logits, every state field) and inputs as mof.runtime.contract.graph_io
    declares them, and the ModelProto."""
    from onnx import helper
    g, c, sem = net.g, net.c, net.sem
    io = graph_io(sem.kind, c)
    g.output_as(logits, LOGITS)
    if c.blocks:
        state = {**state, **_stacked_sums(net, sums)}
    for out in io.outputs[1:]:                                              # state_out.<field>
        g.output_as(state[out.name[len(STATE_OUT):]], out.name)
    model = helper.make_model(g.graph(f"mof_{c.family}_{sem.kind}", value_infos(io.inputs), value_infos(io.outputs)),
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name=f"mof-export ({sem.kind} graph)")
    model.ir_version = 8
    return model


def value_infos(specs) -> list:
    """contract TensorSpecs -> ONNX ValueInfoProtos (dtype, ints and symbolic dims)."""
    from onnx import helper
    return [helper.make_tensor_value_info(t.name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)), list(t.shape))
            for t in specs]


def state_in(field: str) -> str:
    return STATE_IN + field


def gru_weights(get, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = lambda n: np.asarray(get(f"{prefix}/cell/{n}"), np.float32)
    return f("kernel"), f("recurrent_kernel"), f("bias")


def batchnorm_affine(get, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm as y = x * scale + shift (moving statistics, eps 1e-3)."""
    mean = np.asarray(get(f"{prefix}/moving_mean"), np.float64)
    var = np.asarray(get(f"{prefix}/moving_variance"), np.float64)
    gamma = np.asarray(get(f"{prefix}/gamma"), np.float64)
    beta = np.asarray(get(f"{prefix}/beta"), np.float64)
    scale = gamma / np.sqrt(var + EPS_KERAS)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def checkpoint_getter(prefix) -> Callable[[str], np.ndarray]:
    from ._tf import import_tf
    tf = import_tf()
    reader = tf.train.load_checkpoint(str(prefix))
    return lambda name: reader.get_tensor(name + "/.ATTRIBUTES/VARIABLE_VALUE")
