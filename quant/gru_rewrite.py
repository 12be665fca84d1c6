"""Rewrite ONNX GRU ops as MatMuls + a Loop, so MatMul-based int8 quantization reaches GRU weights.

onnxruntime's quantizer leaves the GRU op in float (docs/network.md, "int8"): ~8 M weights of the
full-size model's RNN expert would stay fp32. Each GRU (forward, linear_before_reset=1,
default activations, no sequence_lens) becomes x·W for the whole sequence, the first
step's h·R at top level and a Loop over the remaining steps — the same cell, bit for bit
up to float rounding. A one-token sequence (every stream decoding call) makes no Loop
iterations, which is why the rest is a Loop: a Scan over every step costs more per token, and
an If around one slows long passes (measured: docs/quantization.md, "Why the GRU rewrite ends
in a Loop").
"""

from __future__ import annotations

import numpy as np

from mof.runtime.errors import MofError
from mof.writer.onnx_builder import GraphBuilder
from mof.writer.onnx_walk import all_graphs, prune_initializers


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rewritable(node, inits: dict) -> str | None:
    """None if the GRU can be rewritten, else the reason it cannot."""
    a = _attrs(node)
    if a.get("linear_before_reset", 0) != 1:
        return "linear_before_reset != 1"
    if a.get("direction", b"forward") not in (b"forward", "forward"):
        return f"direction {a.get('direction')}"
    acts = [x.decode() if isinstance(x, bytes) else x for x in a.get("activations", [])]
    if acts and acts != ["Sigmoid", "Tanh"]:
        return f"activations {acts}"
    if a.get("clip") is not None or a.get("layout", 0) != 0:
        return "clip/layout"
    ins = list(node.input) + [""] * (6 - len(node.input))
    if ins[4]:
        return "sequence_lens"
    if ins[1] not in inits or ins[2] not in inits or (ins[3] and ins[3] not in inits):
        return "weights are not initializers"
    return None


def _path(node, k: int) -> str:
    """The path the MatMuls replacing GRU node ``node`` (the ``k``-th of its graph) are named
    under: the node's own less ``/GRU`` (``/rnn/gru.0/GRU`` -> ``/rnn/gru.0``), else ``/gru<k>``."""
    if node.name.endswith("/GRU"):
        return node.name[:-len("/GRU")]
    return node.name or f"/gru{k}"


def _names(graph) -> set[str]:
    """Every node, value and initializer name in ``graph`` and the graphs its nodes hold."""
    names = set()
    for g in all_graphs(graph):
        names.update(t.name for t in g.initializer)
        for n in g.node:
            names.add(n.name)
            names.update(n.output)
    return names


def gru_to_matmuls(model) -> tuple[object, int]:
    """Rewrite every GRU in the main graph. Returns (model, number rewritten); refuses the rest loudly."""
    from onnx import numpy_helper
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes, replaced, count = [], [], 0
    taken = _names(model.graph)                                  # the new nodes' names must be new
    for k, node in enumerate(graph.node):
        if node.op_type != "GRU":
            new_nodes.append(node)
            continue
        reason = _rewritable(node, inits)
        if reason:
            raise MofError(f"cannot rewrite GRU {node.name or k} for int8: {reason}")
        ins = list(node.input) + [""] * (6 - len(node.input))
        W = numpy_helper.to_array(inits[ins[1]])[0]                 # [3U, in]
        R = numpy_helper.to_array(inits[ins[2]])[0]                 # [3U, U]
        U = R.shape[1]
        B = (numpy_helper.to_array(inits[ins[3]])[0] if ins[3] else np.zeros(6 * U, np.float32))
        g = GraphBuilder(_path(node, k), taken)                 # the GRU's place: /rnn/gru.0/...
        zero = g.const([0], dtype=np.int64)
        if ins[5]:
            h0 = g.op("Squeeze", [ins[5], zero])                     # [B, U]
        else:
            batch = g.op("Slice", [g.op("Shape", [ins[0]]), g.const([1], dtype=np.int64),
                                   g.const([2], dtype=np.int64)])
            h0 = g.op("ConstantOfShape", [g.op("Concat", [batch, g.const([U], dtype=np.int64)], axis=0)])
        outs = list(node.output) + [""] * (2 - len(node.output))
        y, h_last = g.matmul_gru(ins[0], h0, W.T.copy(), R.T.copy(), B.reshape(2, 3 * U), "matmuls",
                                 sequence=bool(outs[0]))
        if outs[0]:
            g.op_named("Unsqueeze", [y, g.const([1], dtype=np.int64)], [outs[0]])     # [T, 1, B, U]
        if outs[1]:
            g.op_named("Unsqueeze", [h_last, zero], [outs[1]])                         # [1, B, U]
        new_nodes.extend(g.nodes)
        graph.initializer.extend(g.initializers)
        replaced += [n for n in ins[1:4] if n]
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    prune_initializers(graph, replaced)     # the GRU weights no node (of any graph) reads any more
    return model, count
