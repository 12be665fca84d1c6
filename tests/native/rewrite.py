"""A prototype of the graph rewrite that would use mof.native::RowwiseQMatMul (kept in tests/native
until it lands in quant/): every product quant/rowwise.py wrote as

    Abs(x) -> ReduceMax -> Mul(1/127) = x_scale;  Div(x, x_scale) -> QuantizeLinear(1, 128) = x_u8
    MatMulIntegerToFloat(x_u8, W, 1, w_scale, 128) -> Mul(x_scale)  [-> Add(bias [N] constant)]

becomes RowwiseQMatMul(x, W, w_scale[, bias]), in every graph and Loop / If body; the quantization
nodes go when no product reads them any more. GRU recurrent products (the fixed scale 1/127: Mul(h,
127) -> QuantizeLinear -> MatMulIntegerToFloat, no Mul after) are left as they are."""

from __future__ import annotations

import numpy as np

from mof.runtime.native import DOMAIN
from mof.writer.onnx_walk import all_graphs, node_graphs

MS_DOMAIN = "com.microsoft"


def _producer(graph):
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph):
    out: dict[str, list] = {}
    for g in all_graphs(graph):
        for n in g.node:
            for i in n.input:
                out.setdefault(i, []).append(n)
    return out


def _match(node, prod, cons, graph_outputs):
    """(x, W, w_scale, the Mul after) when ``node`` is a dynamic rowwise product, else None."""
    if node.op_type != "MatMulIntegerToFloat" or node.domain != MS_DOMAIN or len(node.input) != 5:
        return None
    q = prod.get(node.input[0])
    div = prod.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
    if div is None or div.op_type != "Div":
        return None
    x, scale = div.input
    mul_s = prod.get(scale)
    rmax = prod.get(mul_s.input[0]) if mul_s is not None and mul_s.op_type == "Mul" else None
    absx = prod.get(rmax.input[0]) if rmax is not None and rmax.op_type == "ReduceMax" else None
    if absx is None or absx.op_type != "Abs" or absx.input[0] != x:
        return None
    after = cons.get(node.output[0], [])
    if len(after) != 1 or after[0].op_type != "Mul" or list(after[0].input) != [node.output[0], scale] \
            or node.output[0] in graph_outputs:
        return None
    return x, node.input[1], node.input[3], after[0]


def _bias(mul, cons, consts, graph_outputs, n_out):
    """The Add after ``mul`` and its bias name, when it adds a constant float [N]; else (None, None)."""
    after = cons.get(mul.output[0], [])
    if len(after) != 1 or after[0].op_type != "Add" or mul.output[0] in graph_outputs:
        return None, None
    add = after[0]
    other = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
    b = consts.get(other)
    if b is None or b.dtype != np.float32 or b.shape != (n_out,):
        return None, None
    return add, other


def _prune(graph, keep_outputs) -> None:
    """Drop nodes of ``graph`` (not its bodies) whose outputs nobody reads, until none is left."""
    while True:
        used = set(keep_outputs) | {i for g in all_graphs(graph) for n in g.node for i in n.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output) and not list(node_graphs(n))]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def fuse_rowwise(model) -> int:
    """Rewrite ``model`` (a ModelProto from quant/rowwise.py) in place; the number of products fused."""
    from onnx import helper, numpy_helper
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    fused = 0
    for graph in list(all_graphs(model.graph)):
        prod, cons = _producer(graph), _consumers(model.graph)
        outputs = {o.name for o in graph.output}
        for node in list(graph.node):
            m = _match(node, prod, cons, outputs)
            if m is None:
                continue
            x, w, ws, mul = m
            add, bias = _bias(mul, cons, consts, outputs, int(consts[ws].shape[0]) if ws in consts else -1)
            last = add if add is not None else mul
            fusedn = helper.make_node("RowwiseQMatMul", [x, w, ws] + ([bias] if bias else []), list(last.output),
                                      domain=DOMAIN, name=f"native/{mul.output[0]}")
            at = list(graph.node).index(mul)
            graph.node.insert(at, fusedn)
            for n in (node, mul) + ((add,) if add is not None else ()):
                graph.node.remove(n)
            fused += 1
            cons = _consumers(model.graph)
    for graph in all_graphs(model.graph):
        _prune(graph, [o.name for o in graph.output])
    used = {i for g in all_graphs(model.graph) for n in g.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]     # 1/127 and the like, now unread
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    if fused and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return fused
