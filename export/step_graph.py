"""The stream decoder's step graph, written directly in ONNX from the checkpoint's weights.

    logits, state_out = step(input_ids [B, C], position [B], state)

It is the causal form of what xiaothink's code computes (docs/network.md, "Stream mode"), for a T6
or a T7 network (the config's family fields, not a separate builder): the GRUs carry their hidden
states; each transformer block (of every transformer expert) carries the running sums
z = Σ phi(k), u = Σ v (the code's attention is (q·z)/(q·z+1e-6) · u, see
README) and c = Σ o of its LN1 outputs (the thought vector uses their running
mean). A chunk of C >= 1 tokens is processed in parallel where the math allows
(GRU ops over the chunk, running sums via CumSum); logits are for its last token.

The chunk graph (``build_chunk_graph``) is the same network with the reference's own
(window) semantics, from a zero state:

    logits, state_out = chunk(input_ids [B, K])

each layer's sums are taken over the whole chunk and applied at every position of it, the
transformer sees only the last Wt positions and contributes nothing to the last position
when K > Wt (xiaothink's end padding) — so its logits are exact mode's for that window, and
its state (GRU states, z, u and c summed over the window) is what the step graph continues
from. The stream decoder refills with it (docs/bundle-format.md, "The refill rule").
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mof.runtime.config import ModelConfig
from mof.runtime.contract import INPUT_IDS, LOGITS, ONNX_OPSET, POSITION, REFILL_INPUT, STATE_IN
from mof.runtime.state import state_io, state_shapes

from .onnx_layers import LayerGraphBuilder as GraphBuilder

EPS_KERAS = 1e-3      # Keras LayerNormalization / BatchNormalization default
EPS_T6 = 1e-6         # the RNN expert's and the transformer blocks' LayerNorms
ATTN_EPS = 1e-6       # denominator q·z + 1e-6
TEMP_MIN = 1e-6       # T7: the temperature's floor (MoEModel_t7.apply_temperature)

L1 = "layer_with_weights-1"


def build_step_graph(config: ModelConfig, get: Callable[[str], np.ndarray]):
    """``get(name)`` returns a checkpoint variable (name without the ATTRIBUTES suffix)."""
    return _build(config, get, "step")


def build_chunk_graph(config: ModelConfig, get: Callable[[str], np.ndarray]):
    """The exact-semantics chunk graph: ids [B, K] from a zero state -> last logits + state."""
    return _build(config, get, "chunk")


def build_decode_graph(config: ModelConfig, get: Callable[[str], np.ndarray]):
    """Step and chunk in one graph: the step graph's inputs + ``refill`` (see the module doc)."""
    return _build(config, get, "decode")


def _build(config: ModelConfig, get: Callable[[str], np.ndarray], kind: str):
    """One network, three graphs: ``step`` the causal step graph (state in, running sums),
    ``chunk`` the window semantics (zero state, whole-window sums, Wt crop), ``decode`` either,
    chosen by the ``refill`` input."""
    from onnx import TensorProto, helper

    c = config
    window = kind == "chunk"                # the chunk graph alone: no state inputs
    dual = kind == "decode"                 # both semantics, selected by REFILL_INPUT
    g = GraphBuilder(kind)
    f32 = lambda name: np.asarray(get(name), np.float32)
    i64 = lambda v: g.const(v, dtype=np.int64)
    zero = i64([0])

    def initial(field: str, index: int | None = None) -> str:
        """[B, N]: a GRU's initial state — the carried one, or zeros in the chunk graph."""
        if window:
            batch = g.op("Gather", [g.op("Shape", [INPUT_IDS]), i64([0])], axis=0)    # [1] = B
            n = state_shapes(c)[field][-1]
            return g.op("ConstantOfShape", [g.op("Concat", [batch, i64([n])], axis=0)],
                        value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
        if index is None:
            return state_in(field)
        return g.op("Gather", [state_in(field), i64(index)], axis=0)

    def run_gru(x_tbi, h0_bu, prefix, hint, sequence=True):
        """-> (Y [T, B, U], h_T [B, U]); ``sequence=False``: h_T alone (Y is None, the GRU writes
        none — int8's rewrite then keeps no per-step outputs in its Loop)"""
        y, y_h = g.keras_gru(x_tbi, g.op("Unsqueeze", [h0_bu, zero]), *gru_weights(get, prefix), hint,
                             sequence=sequence)
        return (g.op("Squeeze", [y, i64([1])]) if sequence else None), g.op("Squeeze", [y_h, zero])

    # Everything runs time-major ([C, B, ...]): the GRU ops want it, and a layer's state slice
    # [1, B, ...] then broadcasts over the chunk with no reshaping.
    ids_t = g.op("Transpose", [INPUT_IDS], perm=[1, 0])                    # [C, B]

    # 1. embedding block: e = Emb[ids]; GRU over the chunk; x = BN(relu(g Wd + bd)) + e
    #    (a bare embedding, x = e, without the GRU: t7_cpu_standard)
    e_t = g.op("Gather", [g.const(f32("layer_with_weights-0/token_emb/embeddings"), "emb"), ids_t],
               "embed", axis=0)                                             # [C, B, E]
    new_state = {}
    if c.embed_gru:
        y, new_state["emb_h"] = run_gru(e_t, initial("emb_h"), "layer_with_weights-0/lstm1", "emb_gru")  # [C, B, E]
        d = g.op("Relu", [g.dense(y, f32("layer_with_weights-0/dense/kernel"),
                                  f32("layer_with_weights-0/dense/bias"), "emb_dense")])
        scale, shift = batchnorm_affine(get, "layer_with_weights-0/bn")
        x_t = g.op("Add", [g.op("Add", [g.op("Mul", [d, g.const(scale)]), g.const(shift)]), e_t], "x")  # [C, B, E]
    else:
        x_t = e_t

    # 2. router: final GRU state -> softmax(LN(r) Wr + br)   (one weight per expert and sequence)
    _, new_state["router_h"] = run_gru(x_t, initial("router_h"), f"{L1}/router_gru", "router_gru",
                                       sequence=False)                       # [B, R]
    r = g.layer_norm(new_state["router_h"], f32(f"{L1}/router_gru_norm/gamma"),
                     f32(f"{L1}/router_gru_norm/beta"), EPS_KERAS, "router_ln")
    w = g.op("Softmax", [g.dense(r, f32(f"{L1}/router_dense/kernel"), f32(f"{L1}/router_dense/bias"),
                                 "router_dense")], axis=-1)                 # [B, experts]

    # 2b. T7's temperature expert: final GRU state -> max(softplus(LN(t) Wt + bt) + bias, 1e-6)
    if c.temperature:
        _, new_state["temp_h"] = run_gru(x_t, initial("temp_h"), f"{L1}/temp_expert_gru", "temp_gru",
                                         sequence=False)                     # [B, R]
        t_ = g.layer_norm(new_state["temp_h"], f32(f"{L1}/temp_expert_norm/gamma"),
                          f32(f"{L1}/temp_expert_norm/beta"), EPS_KERAS, "temp_ln")
        t_ = g.op("Softplus", [g.dense(t_, f32(f"{L1}/temp_expert_dense/kernel"),
                                       f32(f"{L1}/temp_expert_dense/bias"), "temp_dense")])   # [B, 1]
        temperature = g.op("Max", [g.op("Add", [t_, g.const(f32(f"{L1}/temp_bias"), "temp_bias")]),
                                   g.const(np.float32(TEMP_MIN))], "temperature")          # [B, 1]

    # 3. RNN expert: h = LNl(GRU_i(h)) for each of n GRUs (one LayerNorm shared)
    lnl = (f32(f"{L1}/experts/0/lnl/gamma"), f32(f"{L1}/experts/0/lnl/beta"))
    h, rnn_hs = x_t, []
    for i in range(c.rnn_layers):
        last = i == c.rnn_layers - 1            # past the last GRU only the last position is read:
        yi, hi = run_gru(h, initial("rnn_h", i), f"{L1}/experts/0/context_encoders/{i}", f"rnn_gru{i}",
                         sequence=not last)
        h_i = g.op("Unsqueeze", [hi, zero])                                        # [1, B, U]
        h = g.layer_norm(h_i if last else yi, *lnl, EPS_T6, f"lnl{i}")             # [C or 1, B, U]
        rnn_hs.append(h_i)
    new_state["rnn_h"] = g.op("Concat", rnn_hs, axis=0)
    outs = [g.op("Gather", [h, i64(-1)], axis=0)]                           # [B, U]

    # 4. transformer experts (T6: experts/1; T7: experts/1 and experts/2), y = x + Pos_j[p + t]
    C = g.op("Gather", [g.op("Shape", [INPUT_IDS]), i64(1)], axis=0)
    t = g.op("Range", [i64(0), C, i64(1)])                                  # [C]
    if window:
        pos = g.op("Unsqueeze", [t, i64([1])])                              # [C, 1]: positions 0..C-1
    else:
        pos = g.op("Add", [g.op("Unsqueeze", [t, i64([1])]), g.op("Unsqueeze", [POSITION, zero])])   # [C, B]
    H, dh, E = c.num_heads, c.head_dim, c.embed_dim
    whole = lambda v: g.op("ReduceSum", [v, i64([0])], keepdims=1)          # [1, B, ...]
    running = lambda v, carried: g.op("Add", [g.op("CumSum", [v, zero]), carried])         # [C, B, ...]
    if window:      # every position sees the whole window: sums broadcast, mean over C'
        total = lambda v, carried: whole(v)
    elif dual:      # refill: the whole window's sums (+ the zero state fed) [1, B, ...]; else running
                    # sums [C, B, ...]. The running branch reads only the last row when refilling, so
                    # a refill's sums stay one row and the thought vectors below are computed for
                    # one position, not for every position of the chunk
        tail = g.op("Where", [REFILL_INPUT, i64([-1]), i64([0])])
        total = lambda v, carried: g.op(
            "Where", [REFILL_INPUT, g.op("Add", [whole(v), carried]),
                      running(g.op("Slice", [v, tail, i64([2**62]), zero]), carried)])
    else:           # causal: running sums from the carried state, running mean
        total = running
    heads = i64([0, 0, H, dh])
    merge = i64([0, 0, E])

    def per_block(field):
        """state [blocks, B, ...] -> one slice [1, B, ...] per block (one Split for all)"""
        if window or not c.blocks:
            return [None] * c.blocks
        parts = g.op("Split", [state_in(field), i64([1] * c.blocks)], axis=0, outputs=c.blocks)
        return [parts] if c.blocks == 1 else parts
    z_in, u_in, c_in = per_block("attn_z"), per_block("attn_u"), per_block("thought_c")
    zs, us, cs = [], [], []
    first = 0                                                               # the expert's first block
    for j, (layers, _) in enumerate(c.transformers, start=1):
        T = f"{L1}/experts/{j}"
        yv = g.op("Add", [x_t, g.op("Gather", [g.const(f32(f"{T}/position_embedding/position_embedding/embeddings"),
                                                       f"pos_table{j}"), pos], axis=0)])    # [C, B, E]
        running_count = g.op("Unsqueeze", [g.op("Cast", [g.op("Add", [pos, i64(1)])], to=TensorProto.FLOAT),
                                           i64([2])])                               # [C, B, 1] = p+t+1
        if window or dual:
            # the reference's crop: the transformer sees the last Wt positions only (Pos added before);
            # the decode graph crops only when it refills
            start = (i64([-c.trans_window]) if window else
                     g.op("Where", [REFILL_INPUT, i64([-c.trans_window]), i64([-2**62])]))
            yv = g.op("Slice", [yv, start, i64([2**62]), zero])                    # [C', B, E]
            # the mean's count: C' ([1, 1, 1], the window's), or p+t+1 ([C, B, 1], running)
            window_count = g.op("Reshape", [g.op("Cast", [g.op("Shape", [yv], start=0, end=1)], to=TensorProto.FLOAT),
                                            i64([1, 1, 1])])
            count = (window_count if window else
                     g.op("Where", [REFILL_INPUT, window_count,
                                    g.op("Slice", [running_count, tail, i64([2**62]), zero])]))
        else:
            count = running_count
        for l in range(layers):
            b = first + l                                                   # the block's row in the state
            P = f"{T}/transformer_blocks/{l}"
            tag = f"l{b}"                                                   # node names: the block's state row
            w_ = lambda n: f32(f"{P}/{n}/kernel")
            b_ = lambda n: f32(f"{P}/{n}/bias")
            dense = lambda v, n: g.dense(v, w_(n), b_(n), f"{tag}/{n.split('/')[-1]}")
            phi = lambda v: g.op("Add", [g.op("Elu", [v], alpha=1.0), g.const(1.0)])
            # q, k, v: one MatMul over the concatenated kernels (one activation quantization in int8),
            # phi applied to q and k together
            qkv = g.dense(yv, np.concatenate([w_("lmha/query_dense"), w_("lmha/key_dense"), w_("lmha/value_dense")], 1),
                          np.concatenate([b_("lmha/query_dense"), b_("lmha/key_dense"), b_("lmha/value_dense")]),
                          f"{tag}/qkv")                                     # [C, B, 3E]
            qk, v = g.op("Split", [qkv, i64([2 * E, E])], axis=-1, outputs=2)
            qk = g.op("Reshape", [phi(qk), i64([0, 0, 2 * H, dh])])        # [C, B, 2H, dh]
            q, k = g.op("Split", [qk, i64([H, H])], axis=2, outputs=2)      # [C, B, H, dh]
            v = g.op("Reshape", [v, heads])
            z = total(k, z_in[b])                                           # [C or 1, B, H, dh]
            u = total(v, u_in[b])
            qz = g.op("ReduceSum", [g.op("Mul", [q, z]), i64([-1])], keepdims=1)  # [C, B, H, 1]
            a = g.op("Mul", [g.op("Div", [qz, g.op("Add", [qz, g.const(ATTN_EPS)])]), u])       # [C, B, H, dh]
            # combine_heads then attn_dense: two linear maps in a row, folded into one (in float64)
            wc, bc = w_("lmha/combine_heads").astype(np.float64), b_("lmha/combine_heads").astype(np.float64)
            wa, ba = w_("attn_dense").astype(np.float64), b_("attn_dense").astype(np.float64)
            a = g.dense(g.op("Reshape", [a, merge]), (wc @ wa).astype(np.float32), (bc @ wa + ba).astype(np.float32),
                        f"{tag}/attn_out")
            o = g.layer_norm(g.op("Add", [yv, a]), f32(f"{P}/layernorm1/gamma"), f32(f"{P}/layernorm1/beta"),
                             EPS_T6, f"{tag}/ln1")                          # [C, B, E]
            csum = total(o, c_in[b])                                        # [C or 1, B, E]
            mean_of = (csum, count)
            if l == layers - 1:
                # past the expert's last block only its last position is read: its thought vector,
                # FFN and LN2 for that position alone ([1, B, E]; the state keeps csum whole)
                last = lambda v: g.op("Slice", [v, i64([-1]), i64([2**62]), zero])
                o, mean_of = last(o), (last(csum), last(count))
            # thought = alpha * dense2(gelu(dense1(mean))): alpha folded into dense2
            alpha = f32(f"{P}/alpha").astype(np.float64)
            t2 = "thought_processor/layer_with_weights-1"
            thought = g.dense(g.gelu(dense(g.op("Div", list(mean_of)), "thought_processor/layer_with_weights-0")),
                              (w_(t2) * alpha).astype(np.float32), (b_(t2) * alpha).astype(np.float32),
                              f"{tag}/thought2")
            o = g.op("Add", [o, thought])
            ffn = dense(g.gelu(dense(o, "ffn/layer_with_weights-0")), "ffn/layer_with_weights-1")
            yv = g.layer_norm(g.op("Add", [o, ffn]), f32(f"{P}/layernorm2/gamma"), f32(f"{P}/layernorm2/beta"),
                              EPS_T6, f"{tag}/ln2")
            zs.append(z)
            us.append(u)
            cs.append(csum)
        first += layers
        y_last = g.op("Gather", [yv, i64(-1)], axis=0)                      # [B, E]
        outs.append(g.dense(y_last, f32(f"{T}/dense/kernel"), f32(f"{T}/dense/bias"), f"trans_out{j}"))  # [B, U]

    # 5. mix and head (last position only)
    mixed = None
    for i, out in enumerate(outs):
        n = g.layer_norm(out, f32(f"{L1}/expert_norms/{i}/gamma"), f32(f"{L1}/expert_norms/{i}/beta"),
                         EPS_KERAS, f"norm{i}")                             # [B, U]
        if (window or dual) and i:
            # xiaothink pads the cropped transformer output AT THE END: past Wt, the last position
            # gets no transformer contribution (n = 0)
            inside = g.op("Cast", [g.op("LessOrEqual", [C, i64(c.trans_window)])], to=TensorProto.FLOAT)
            if dual:
                inside = g.op("Where", [REFILL_INPUT, inside, g.const(np.float32(1.0))])
            n = g.op("Mul", [n, inside])
        term = g.op("Mul", [n, g.op("Slice", [w, i64([i]), i64([i + 1]), i64([1])])])
        mixed = term if mixed is None else g.op("Add", [mixed, term])
    m = g.layer_norm(mixed, f32(f"{L1}/combined_norm/gamma"), f32(f"{L1}/combined_norm/beta"), EPS_KERAS,
                     "combined_norm")
    logits = g.dense(m, f32(f"{L1}/next_token_predictor/kernel"), f32(f"{L1}/next_token_predictor/bias"), "head")
    if c.temperature:
        logits = g.op("Div", [logits, temperature], "temperature_div")      # [B, V] / [B, 1]

    g.output_as(logits, LOGITS)
    if c.blocks:
        # all blocks' sums at once: [C or 1, blocks*B, ...] -> last position -> [blocks, B, ...]
        stack = lambda xs, shape: g.op("Reshape", [g.op("Gather", [g.op("Concat", xs, axis=1), i64(-1)], axis=0),
                                                   i64(shape)])
        new_state.update(attn_z=stack(zs, [c.blocks, -1, H, dh]), attn_u=stack(us, [c.blocks, -1, H, dh]),
                         thought_c=stack(cs, [c.blocks, -1, E]))

    inputs = [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT32, ["batch", "seq" if window else "chunk"])]
    if not window:
        inputs.append(helper.make_tensor_value_info(POSITION, TensorProto.INT64, ["batch"]))
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", c.vocab_size])]
    for name_in, name_out, shape in state_io(c):
        field = name_in.split(".", 1)[1]
        if not window:
            inputs.append(helper.make_tensor_value_info(name_in, TensorProto.FLOAT, shape))
        outputs.append(helper.make_tensor_value_info(name_out, TensorProto.FLOAT, shape))
        g.output_as(new_state[field], name_out)
    if dual:
        inputs.append(helper.make_tensor_value_info(REFILL_INPUT, TensorProto.BOOL, []))
    model = helper.make_model(g.graph(f"mof_{c.family}_{kind}", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name=f"mof-export ({kind} graph)")
    model.ir_version = 8
    return model


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
