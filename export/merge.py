"""The decode graph: the step and chunk graphs in one ONNX graph, so one onnxruntime session holds
(and prepacks) the weights once.

    decode(input_ids, position, state.*, refill) = chunk(input_ids)                  if refill
                                                  = step(input_ids, position, state.*) otherwise

An ``If`` on the scalar ``refill`` holds the chunk graph in its then-branch and the step graph in
its else-branch; every weight of both is an initializer of the outer graph, stored once
(identical tensors merged by content), which both branches read from the outer scope. The
branches are the two graphs unchanged — node for node, so the results are the same bit for bit —
with their own value names prefixed. With refill the state inputs are ignored (they still need
a value of the right shape: zeros of the batch).
"""

from __future__ import annotations

import hashlib

from mof.runtime.contract import REFILL_INPUT

STEP_PREFIX, CHUNK_PREFIX = "step/", "chunk/"
HOIST_MIN_BYTES = 1024          # the weights: what the branches share (what the weights file stores)


def _graphs_in(node):
    from onnx import AttributeProto
    for a in node.attribute:
        if a.type == AttributeProto.GRAPH:
            yield a.g
        elif a.type == AttributeProto.GRAPHS:
            yield from a.graphs


def _hoist(graph, store: dict, renamed: dict) -> None:
    """Move every initializer of at least HOIST_MIN_BYTES of ``graph`` and its subgraphs into
    ``store`` (content name -> tensor); ``renamed``: old name -> content name. Small ones (scalars,
    epsilons, shapes) stay where they are: onnxruntime's fusions look for them as constants of
    the graph they are used in."""
    from onnx import TensorProto, numpy_helper
    keep = []
    for t in graph.initializer:
        raw = t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()
        if len(raw) < HOIST_MIN_BYTES:
            keep.append(t)
            continue
        key = hashlib.sha256(raw + repr((t.data_type, tuple(t.dims))).encode()).hexdigest()[:24]
        name = f"w.{key}"
        renamed[t.name] = name
        if name not in store:
            copy = TensorProto()
            copy.CopyFrom(t)
            copy.name = name
            store[name] = copy
    kept = [TensorProto() for _ in keep]
    for k, t in zip(kept, keep):
        k.CopyFrom(t)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for node in graph.node:
        for g in _graphs_in(node):
            _hoist(g, store, renamed)


def _defined(graph, names: set) -> set:
    names.update(i.name for i in graph.input)
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.update(o for o in node.output if o)
        for g in _graphs_in(node):
            _defined(g, names)
    return names


def _rename(graph, mapping: dict, prefix: str) -> None:
    for v in list(graph.input) + list(graph.output) + list(graph.value_info) + list(graph.initializer):
        v.name = mapping.get(v.name, v.name)
    for node in graph.node:
        node.input[:] = [mapping.get(x, x) for x in node.input]
        node.output[:] = [mapping.get(x, x) for x in node.output]
        if node.name:
            node.name = prefix + node.name
        for g in _graphs_in(node):
            _rename(g, mapping, prefix)


def _branch(model, prefix: str, store: dict):
    """The model's graph as an If branch reading its weights and the outer inputs from the outer
    scope. Returns (branch graph, the model's output names in order)."""
    from onnx import helper
    graph = model.graph
    outputs = [o.name for o in graph.output]
    renamed: dict = {}
    _hoist(graph, store, renamed)
    outer = {i.name for i in graph.input}
    mapping = {n: prefix + n for n in _defined(graph, set()) - outer}
    mapping.update(renamed)
    _rename(graph, mapping, prefix)
    body = helper.make_graph(list(graph.node), prefix.rstrip("/"), [], list(graph.output),
                             initializer=list(graph.initializer), value_info=list(graph.value_info))
    return body, outputs


def decode_graph(step, chunk):
    """step and chunk ModelProtos (of one precision) -> the decode ModelProto. The arguments are
    consumed (their graphs are rewritten in place): pass copies to keep them."""
    import onnx
    from onnx import TensorProto, helper
    store: dict = {}
    step_inputs = [onnx.ValueInfoProto() for _ in step.graph.input]
    for copy, v in zip(step_inputs, step.graph.input):
        copy.CopyFrom(v)
    step_outputs = {}
    for o in step.graph.output:                       # copies: the branches rename their own
        step_outputs[o.name] = onnx.ValueInfoProto()
        step_outputs[o.name].CopyFrom(o)
    then_body, chunk_outs = _branch(chunk, CHUNK_PREFIX, store)
    else_body, step_outs = _branch(step, STEP_PREFIX, store)
    if sorted(chunk_outs) != sorted(step_outs):
        raise ValueError(f"step and chunk graphs have different outputs: {step_outs} / {chunk_outs}")
    by_name = dict(zip(chunk_outs, list(then_body.output)))
    ordered = [onnx.ValueInfoProto() for _ in step_outs]
    for copy, name in zip(ordered, step_outs):
        copy.CopyFrom(by_name[name])
    del then_body.output[:]
    then_body.output.extend(ordered)
    outputs = [step_outputs[name] for name in step_outs]
    refill = helper.make_tensor_value_info(REFILL_INPUT, TensorProto.BOOL, [])
    node = helper.make_node("If", [REFILL_INPUT], step_outs, name="refill_or_step",
                            then_branch=then_body, else_branch=else_body)
    graph = helper.make_graph([node], "decode", step_inputs + [refill], outputs,
                              initializer=list(store.values()))
    model = helper.make_model(graph, opset_imports=list(step.opset_import), ir_version=step.ir_version,
                              producer_name=step.producer_name)
    return model


def with_decode(graphs: dict) -> dict:
    """{"step": model, "chunk": model, …} (ModelProtos or bytes) -> the same plus "decode", built
    from copies of the two."""
    import onnx
    from mof.runtime.contract import GRAPH_CHUNK, GRAPH_DECODE, GRAPH_STEP

    def copy(m):
        return onnx.load_from_string(bytes(m) if isinstance(m, (bytes, bytearray)) else m.SerializeToString())
    return {**graphs, GRAPH_DECODE: decode_graph(copy(graphs[GRAPH_STEP]), copy(graphs[GRAPH_CHUNK]))}
