"""mof-quantize --native: fused variants of a bundle's int8 decoding graphs (docs/native.md).

Every product quant/rowwise.py wrote as

    Abs(x) -> ReduceMax -> Mul(1/127) = x_scale;  Div(x, x_scale) -> QuantizeLinear(1, 128) = x_u8
    MatMulIntegerToFloat(x_u8, W, 1, w_scale, 128) -> Mul(x_scale)  [-> Add(bias [N] constant)]
    [-> Add(residual: a computed tensor, of y's shape or one that broadcasts with it)]

becomes mof.native::RowwiseQMatMul(x, W, w_scale[, bias][, residual]), in every graph and Loop / If
body; the quantization nodes go when no product reads them any more. Every GRU that quant/gru_rewrite.py wrote
as a first step and a Loop over the others (their recurrent products with the fixed scale 1/127:
Mul(h, 127) -> QuantizeLinear -> MatMulIntegerToFloat, no Mul after) becomes one
mof.native::QGru(xw, h0, R, r_scale, b_h) -> (h_T[, Y]).
The graphs are rewritten with their weights left where they are (external data in the precision's
weights file, the same initializers at the same offsets), so no weight is written twice; the fused
graphs are checked bit for bit against the stock ones on probe inputs before anything is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from mof.runtime.bundle import verify_bundle
from mof.runtime.contract import MANIFEST_FILE, NATIVE_FILES, NATIVE_PRECISIONS, QUANTIZED_GRAPHS, native_key
from mof.runtime.errors import MofError
from mof.runtime.native import DOMAIN, build
from mof.writer.bundle_writer import BundleWriter
from mof.writer.manifest import add_native, native_record, without_files, without_native
from mof.writer.onnx_walk import all_graphs, node_graphs, prune_initializers

MS_DOMAIN = "com.microsoft"
FLOAT = 1                                  # onnx.TensorProto.FLOAT


def _producer(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph) -> dict:
    """value name -> the nodes reading it, in ``graph`` and every graph nested in it."""
    out: dict[str, list] = {}
    for g in all_graphs(graph):
        for n in g.node:
            for i in n.input:
                out.setdefault(i, []).append(n)
    return out


def _quantized_input(node, prod):
    """(x, x_scale) when ``node`` reads QuantizeLinear(Div(x, ReduceMax(Abs(x)) * c)), else None."""
    q = prod.get(node.input[0])
    div = prod.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
    if div is None or div.op_type != "Div":
        return None
    x, scale = div.input
    mul_s = prod.get(scale)
    rmax = prod.get(mul_s.input[0]) if mul_s is not None and mul_s.op_type == "Mul" else None
    absx = prod.get(rmax.input[0]) if rmax is not None and rmax.op_type == "ReduceMax" else None
    return (x, scale) if absx is not None and absx.op_type == "Abs" and absx.input[0] == x else None


def _match(node, prod, cons, graph_outputs):
    """(x, W, w_scale, the Mul after) when ``node`` is a dynamic rowwise product, else None."""
    if node.op_type != "MatMulIntegerToFloat" or node.domain != MS_DOMAIN or len(node.input) != 5:
        return None
    found = _quantized_input(node, prod)
    if found is None:
        return None
    x, scale = found
    after = cons.get(node.output[0], [])
    if len(after) != 1 or after[0].op_type != "Mul" or list(after[0].input) != [node.output[0], scale] \
            or node.output[0] in graph_outputs:
        return None
    return x, node.input[1], node.input[3], after[0]


def _bias(mul, cons, inits, graph_outputs, n_out):
    """The Add after ``mul`` and its bias name, when it adds a constant float [N]; else (None, None).
    ``inits``: name -> TensorProto (its data may be external: only dims and type are read)."""
    after = cons.get(mul.output[0], [])
    if len(after) != 1 or after[0].op_type != "Add" or mul.output[0] in graph_outputs:
        return None, None
    add = after[0]
    other = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
    b = inits.get(other)
    if b is None or b.data_type != FLOAT or tuple(b.dims) != (n_out,):
        return None, None
    return add, other


def _residual(last, cons, inits, graph_outputs):
    """The Add after ``last`` and its other input when it adds a computed tensor (a residual
    connection, of y's shape or one that broadcasts with it: the op adds either), else (None, None)."""
    after = cons.get(last.output[0], [])
    if len(after) != 1 or after[0].op_type != "Add" or last.output[0] in graph_outputs:
        return None, None
    add = after[0]
    other = add.input[1] if add.input[0] == last.output[0] else add.input[0]
    if other in inits or other == last.output[0]:
        return None, None
    return add, other


def _prune_nodes(graph, keep_outputs) -> None:
    """Drop nodes of ``graph`` (not its bodies) whose outputs nobody reads, until none is left."""
    while True:
        used = set(keep_outputs) | {i for g in all_graphs(graph) for n in g.node for i in n.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output) and not list(node_graphs(n))]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _fuse_graph(model, graph, inits) -> int:
    """Fuse the products of one graph (or body) of ``model``; how many."""
    from onnx import helper
    fused = 0
    prod, cons = _producer(graph), _consumers(model.graph)
    outputs = {o.name for o in graph.output}
    for node in list(graph.node):
        m = _match(node, prod, cons, outputs)
        if m is None:
            continue
        x, w, ws, mul = m
        n_out = int(inits[ws].dims[0]) if ws in inits and len(inits[ws].dims) == 1 else -1
        add, bias = _bias(mul, cons, inits, outputs, n_out)
        last = add if add is not None else mul
        res_add, residual = _residual(last, cons, inits, outputs)
        end = res_add if res_add is not None else last
        extra = [bias or ""] + [residual] if residual else [bias] if bias else []
        fused_node = helper.make_node("RowwiseQMatMul", [x, w, ws] + extra, list(end.output),
                                      domain=DOMAIN, name=f"native/{mul.output[0]}")
        graph.node.insert(list(graph.node).index(end), fused_node)     # after every input it reads
        for n in [node, mul] + [n for n in (add, res_add) if n is not None]:
            graph.node.remove(n)
        fused += 1
        cons = _consumers(model.graph)
    return fused


# what quant/gru_rewrite.py (and rowwise.py's quantization of the recurrent product) name a GRU's
# nodes, under its path P (``/rnn/gru.0/matmuls``); tests/native fuse the demo's GRUs and ONNX GRUs
# rewritten by that code, so a change of names there fails them
GRU_LOOP = "/Loop"                         # P/Loop: the steps after the first
GRU_NODES = {"xw": ("/step0/Slice", "Slice", 0),                  # P/step0/Slice reads xw [T, B, 3U]
             "h0": ("/step0/recurrent/quantize/Mul", "Mul", 0),  # Mul(h0, 127)
             "R": ("/step0/recurrent/MatMulIntegerToFloat", "MatMulIntegerToFloat", 1),
             "r_scale": ("/step0/recurrent/MatMulIntegerToFloat", "MatMulIntegerToFloat", 3),
             "b_h": ("/step0/Add_1", "Add", 1)}                  # Add(rec_h, b_h)
GRU_Y = "/y/Concat"                        # P/y/Concat: [h1, the Loop's steps] when Y is read


def _gru_inputs(graph, path: str):
    """QGru's inputs [xw, h0, R, r_scale, b_h] of the GRU rewritten under ``path``, or None."""
    by_name = {n.name: n for n in graph.node}
    found = []
    for suffix, op, index in GRU_NODES.values():
        node = by_name.get(path + suffix)
        if node is None or node.op_type != op or len(node.input) <= index:
            return None
        found.append(node.input[index])
    return found


def fuse_gru(model) -> int:
    """Replace, in ``model``'s main graph, every rewritten int8 GRU (its first step, the Loop over the
    others, the Concat of their states) with one mof.native::QGru; how many."""
    from onnx import helper
    graph, fused = model.graph, 0
    for loop in [n for n in graph.node if n.op_type == "Loop" and n.name.endswith(GRU_LOOP)]:
        path = loop.name[:-len(GRU_LOOP)]
        inputs = _gru_inputs(graph, path)
        if inputs is None:
            continue
        concat = next((n for n in graph.node if n.name == path + GRU_Y), None) if len(loop.output) > 1 else None
        outputs = [loop.output[0]] + ([concat.output[0]] if concat is not None else [])
        node = helper.make_node("QGru", inputs, outputs, domain=DOMAIN, name=f"{path}/native/QGru")
        graph.node.insert(list(graph.node).index(loop), node)
        for n in (loop,) + ((concat,) if concat is not None else ()):
            graph.node.remove(n)
        fused += 1
    return fused


def fuse_rowwise(model) -> int:
    """Rewrite ``model`` (a ModelProto from quant/rowwise.py; its weights may stay external) in place;
    the number of products fused."""
    from onnx import helper
    inits = {t.name: t for t in model.graph.initializer}
    fused = sum(_fuse_graph(model, g, inits) for g in list(all_graphs(model.graph)))
    for graph in all_graphs(model.graph):
        _prune_nodes(graph, [o.name for o in graph.output])
    prune_initializers(model.graph, list(inits))            # 1/127 and the like, now unread
    uses_native = any(n.domain == DOMAIN for g in all_graphs(model.graph) for n in g.node)
    if uses_native and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return fused


def fuse(model) -> tuple[int, int]:
    """Both rewrites of ``model``, in place: (products fused, GRUs fused)."""
    grus = fuse_gru(model)
    return fuse_rowwise(model), grus          # fuse_rowwise also drops what the GRUs left unread


def probe_feeds(sess, config, sizes: dict, rng, refill) -> dict:
    """Inputs for a session: ids, positions that fit the position table, states in [-0.95, 0.95]."""
    out = {}
    for i in sess.get_inputs():
        shape = [sizes[d] if isinstance(d, str) else d for d in i.shape]
        if i.name == "input_ids":
            out[i.name] = rng.integers(0, config.vocab_size, size=shape).astype(np.int32)
        elif i.name == "position":
            out[i.name] = rng.integers(0, config.max_positions - sizes["chunk"] + 1, size=shape).astype(np.int64)
        elif i.type == "tensor(bool)":
            out[i.name] = np.array(refill)
        else:
            out[i.name] = rng.uniform(-0.95, 0.95, size=shape).astype(np.float32)
    return out


def check_bit_equal(stock: Path, fused: Path, config, library: str, log) -> int:
    """Run both graph files (opened by path: their weights file beside them) on probe inputs; every
    output bit must be equal, else MofError. Returns how many probes were compared."""
    import onnxruntime as ort

    from mof.runtime.model import session_options
    so_native = session_options(None)
    so_native.register_custom_ops_library(library)
    a = ort.InferenceSession(str(stock), session_options(None), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(fused), so_native, providers=["CPUExecutionProvider"])
    probes = [({"batch": 1, "chunk": 1, "seq": config.window}, False),
              ({"batch": 2, "chunk": 3, "seq": min(17, config.window)}, True)]
    worst = 0.0
    for seed, (sizes, refill) in enumerate(probes):
        feed = probe_feeds(a, config, sizes, np.random.default_rng(seed), refill)
        for out, x, y in zip([o.name for o in a.get_outputs()], a.run(None, feed), b.run(None, feed)):
            diff = float(np.max(np.abs(x.astype(np.float64) - y), initial=0.0))
            worst = max(worst, diff)
            if x.shape != y.shape or not np.array_equal(x.view(np.uint8), y.view(np.uint8)):
                raise MofError(f"{fused.name}: output {out} differs from {stock.name}'s (max |d| {diff:g}); "
                               "nothing written")
    log(f"      {fused.name}: bit-equal to {stock.name} on {len(probes)} probes (max |d| = {worst:g})")
    return len(probes)


def _fused_graphs(bundle_dir: Path, manifest, precision: str, log) -> dict:
    """graph name -> (stock file, fused ModelProto, (products, GRUs) fused) of ``precision``'s
    decoding graphs."""
    import onnx
    out = {}
    for name in QUANTIZED_GRAPHS:
        stock = manifest.graph_file(name, precision)
        if stock is None:
            continue
        model = onnx.load(str(bundle_dir / stock), load_external_data=False)
        products, grus = fuse(model)
        if products == 0:
            raise MofError(f"{bundle_dir}: {stock} has no rowwise product to fuse; nothing written")
        residuals = sum(n.op_type == "RowwiseQMatMul" and len(n.input) == 5 for g in all_graphs(model.graph)
                        for n in g.node)
        log(f"      {stock}: {products} products fused into {DOMAIN}::RowwiseQMatMul ({residuals} with the "
            f"residual Add after them), {grus} GRUs into {DOMAIN}::QGru")
        out[name] = (stock, model, (products, grus))
    return out


def add_native_graphs(bundle_dir: Path, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Add fused variants of the bundle's int8 decoding graphs, checked bit for bit, atomically."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    precisions = [p for p in NATIVE_PRECISIONS if manifest.graph_file(QUANTIZED_GRAPHS[0], p)]
    if not precisions:
        raise MofError(f"{bundle_dir} has no int8 graphs to fuse; add them first with: mof-quantize {bundle_dir}")
    old = {f for g in manifest["graphs"].values() if isinstance(g, dict)
           for p in precisions for f in [g.get(native_key(p))] if isinstance(f, str)}
    if old and not force:
        raise MofError(f"{bundle_dir} already has native graphs (use --force to redo them)")
    native = build()
    if native.path is None:
        raise MofError(f"cannot check fused graphs without the native library: {native.note}")
    log(f"      {native.note}")
    new_manifest = without_native(without_files(manifest))
    with BundleWriter(bundle_dir, force=True) as w:
        for name in manifest["files"]:
            if name not in old and name != MANIFEST_FILE:
                shutil.copy2(bundle_dir / name, w.path(name))
        for p in precisions:
            files, products, grus, probes = {}, {}, {}, 0
            for name, (stock, model, (n, g)) in _fused_graphs(bundle_dir, manifest, p, log).items():
                files[name] = NATIVE_FILES[p][name]
                w.path(files[name]).write_bytes(model.SerializeToString())
                probes += check_bit_equal(w.path(stock), w.path(files[name]), manifest.config, str(native.path), log)
                products[name], grus[name] = n, g
            new_manifest = add_native(new_manifest, p, files, native_record(products, native.isa, probes, grus))
        return w.commit(new_manifest)
