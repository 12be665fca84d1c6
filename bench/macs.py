"""Multiply-accumulates of a window pass, counted from the decode graph and the pass's token count.

Every MatMul-like node (MatMul, Gemm, FusedMatMul, MatMulInteger, MatMulIntegerToFloat,
MatMulNBits, GRU) of the graph and of the graphs its nodes hold (``mof.writer.onnx_walk``) is a
``Site``: its weight's shape [K, N] and how often it runs in a pass of T tokens (batch 1):

- at top level, on the pass's tokens (T rows: the graph's time axis), or on one row — the last
  position (a ``Gather`` of one position: the head, the trans-out dense), a recurrence's final
  state (the router) or a state input (an int8 GRU's first recurrent step) — or on a fixed
  number of rows: one row broadcast against a constant [n, ..., E] (the window attention's
  H head rows);
- a product of two computed operands (the window attention's per-position mix, f [C, H] ·
  [H, E]): K and N are the last dimensions the walk knows (a weight product's columns, a
  Reshape's constant width, kept through a Transpose of the leading axes or a per-row scale);
- in a ``Loop`` body, once per iteration: the int8/int4 GRUs are a top-level first step plus a
  ``Loop`` over the remaining T - 1 tokens; a ``Scan`` body once per token;
- an fp32 ``GRU``: T × 3H × (I + H) per direction.

A recurrence's step product — h · R, which cannot start before the step before it ends — is
marked on its Site (``weight``: the recurrent weight's name, ``weight_bytes``: its bytes as
stored): an fp32 ``GRU``'s R input (T steps per call); in the int8/int4 graphs the GRU rewrite's
``.../recurrent/MatMul...`` products (the path quant/gru_rewrite.py names them by, the
``UNIT_INPUT`` doc_string the rewrite gives them before quantization, or, in graphs made before
nodes were named, their ``recurrent_kernel`` weight), one step per call: the
top-level first step and the ``Loop`` body's T - 1 — T steps per GRU either way
(``GraphMacs.recurrences``). mof.bench.roofline reads these weights once per step.

Which tensors carry the time axis is propagated from the inputs with a ``chunk`` dimension
(``input_ids``): outputs of a node carry it if an input does, except ``Shape``/``Size``, a
``Gather`` of one position (a scalar index), a ``Slice`` of the last position or a
``ReduceSum`` over the time axis, a recurrence's final state (GRU/RNN/LSTM outputs 1+, a
Loop's/Scan's carried values). The decode graph's ``refill`` input selects the semantics
(``count_sites(path, refill=...)``: a window pass, or a step-graph call such as plain mode's
prefill): small constants, ``Where`` and ``If`` on ``refill`` are folded (an If: the branch it
runs, walked in place), so a refill's one-row thought vectors count one row.
tests/bench/test_macs.py checks the count against the shapes onnxruntime's profiler records for
every kernel call of the demo's decode graphs.

Needs the onnx package (the [quant] extra); ``count_sites`` returns None without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

MATMUL_OPS = ("MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "MatMulIntegerToFloat", "MatMulNBits")
RECURRENT_OPS = ("GRU", "RNN", "LSTM")
TIME_DIM = "chunk"               # the symbolic dimension of input_ids a pass's tokens run along
ONE_ROW = "one"                  # Site.rows: one row per call (batch 1)
TOKENS = "tokens"                # ... the pass's T tokens


@dataclass(frozen=True)
class Site:
    op: str              # op type (GRU: the whole recurrence)
    k: int               # the reduction length: the A operand's last dimension (GRU: input size I)
    n: int               # output columns (GRU: gates × hidden size × directions)
    rows: str | int      # TOKENS (T rows per call), ONE_ROW, or a fixed count of rows (a one-row
                         # value broadcast against a constant, e.g. one row per attention head)
    loops: tuple = ()    # the bodies it sits in, outermost first: "Loop" (T - 1 runs), "Scan" (T)
    recurrent_k: int = 0  # GRU/RNN/LSTM: the hidden size H its recurrent weight multiplies
    weight: str = ""     # a recurrence's step product: the recurrent weight it reads each step ("": none)
    weight_bytes: int = 0  # ... that weight's bytes as stored (an int8 / int4 weight's scales included)

    def calls(self, tokens: int) -> int:
        """How many times the node runs in a pass of ``tokens`` tokens."""
        c = 1
        for kind in self.loops:
            c *= max(tokens - 1, 0) if kind == "Loop" else tokens
        return c

    def rows_per_call(self, tokens: int) -> int:
        return tokens if self.rows == TOKENS else 1 if self.rows == ONE_ROW else int(self.rows)

    def macs(self, tokens: int) -> int:
        return self.calls(tokens) * self.rows_per_call(tokens) * (self.k + self.recurrent_k) * self.n

    def steps(self, tokens: int) -> int:
        """Sequential steps of its recurrence in a pass of ``tokens`` tokens (0: not a recurrence's
        step product): a GRU op one per row, a step product one per call (batch 1)."""
        return self.calls(tokens) * self.rows_per_call(tokens) if self.weight else 0

    @property
    def step_macs(self) -> int:
        """Multiply-accumulates of one step's recurrent product (h · R), batch 1."""
        if not self.weight:
            return 0
        return (self.recurrent_k if self.op in RECURRENT_OPS else self.k) * self.n


@dataclass(frozen=True)
class Recurrence:
    """One recurrent weight of a graph in a pass: read once per step, step after step."""
    weight: str          # the recurrent weight's initializer (fp32: a GRU's R; int8/int4: its product's weight)
    op: str              # the op that reads it: GRU, or the step product's MatMul kernel
    weight_bytes: int    # its bytes as stored (scales included)
    steps: int           # sequential steps of the pass that read it
    step_macs: int       # multiply-accumulates of one step's product with it


@dataclass(frozen=True)
class GraphMacs:
    sites: tuple          # every Site of the graph
    kernels: tuple        # the MatMul-like op types it contains (sorted)
    nbits: tuple          # MatMulNBits: ((bits, block_size, accuracy_level), ...) found

    def macs(self, tokens: int) -> int:
        """Multiply-accumulates of one pass over ``tokens`` tokens, batch 1."""
        return sum(s.macs(tokens) for s in self.sites)

    def sequential_macs(self, tokens: int) -> int:
        """The part of ``macs`` in the recurrences' step products (h · R, step after step)."""
        return sum(s.steps(tokens) * s.step_macs for s in self.sites)

    def recurrences(self, tokens: int) -> tuple:
        """Each recurrent weight with the steps that read it in a pass over ``tokens`` tokens
        (an int8 GRU's top-level first step and its Loop's T - 1 are one weight's T steps)."""
        out: dict[str, Recurrence] = {}
        for s in self.sites:
            if s.weight:
                r = out.get(s.weight)
                steps = s.steps(tokens) + (r.steps if r else 0)
                out[s.weight] = Recurrence(s.weight, s.op, s.weight_bytes, steps, s.step_macs)
        return tuple(out.values())


def _scalar(consts: dict, name: str) -> bool:
    shape = consts.get(name)
    return shape is not None and len(shape) == 0


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _matmul_site(node, weights: dict, rows, loops: tuple, widths: dict) -> Optional[Site]:
    op = node.op_type
    a = _attrs(node)
    if op == "MatMulNBits":
        return Site(op, int(a["K"]), int(a["N"]), rows, loops)
    if len(node.input) < 2:
        return None
    shape = weights.get(node.input[1])
    if shape is None:                         # both operands computed: their last dimensions
        k, n = widths.get(node.input[0]), widths.get(node.input[1])
        return Site(op, k, n, rows, loops) if k and n else None
    if len(shape) < 2:
        return None
    k, n = int(shape[-2]), int(shape[-1])
    if op == "Gemm" and a.get("transB", 0):
        k, n = n, k
    if op == "FusedMatMul" and a.get("transB", 0):
        k, n = n, k
    return Site(op, k, n, rows, loops)


def _recurrent_site(node, s: "_Scope", rows: str, loops: tuple) -> Optional[Site]:
    w, r = s.weights.get(node.input[1]), s.weights.get(node.input[2])
    if w is None or r is None:
        return None
    dirs, gates_h, i = (int(x) for x in w)
    h = int(r[-1])
    return Site(node.op_type, i, dirs * gates_h, rows, loops, recurrent_k=h,
                weight=node.input[2], weight_bytes=s.nbytes[node.input[2]])


def _step_product(node) -> bool:
    """A recurrence's step product h · R: the GRU rewrite's ``.../recurrent/MatMul...`` (named by
    path), a MatMul carrying its ``UNIT_INPUT`` mark (the hidden state, before quantization), or
    one reading the rewrite's ``recurrent_kernel`` (graphs made before nodes were named by path)."""
    from mof.writer.onnx_builder import UNIT_INPUT
    return (node.doc_string == UNIT_INPUT or "recurrent" in node.name.split("/")[:-1]
            or any(part.startswith("recurrent_kernel") for part in node.input[1].split("/")))


def _stored_bytes(node, s: "_Scope") -> int:
    """Bytes of the weights a product reads: its initializer inputs after the first that are not
    scalars (the weight, an int8 weight's per-column scales, an int4 weight's block scales)."""
    return sum(s.nbytes[i] for i in node.input[1:] if i in s.nbytes and len(s.weights[i]) > 0)


def _one_row(node, values: dict) -> bool:
    """A Slice of the last position along the time axis (axis 0), or a ReduceSum over it."""
    get = lambda i: values.get(node.input[i]) if len(node.input) > i and node.input[i] else None
    if node.op_type == "Slice":
        starts, axes = get(1), get(3)
        return (starts is not None and list(starts.ravel()) == [-1]
                and (axes is None or list(axes.ravel()) == [0]))
    if node.op_type == "ReduceSum":
        axes = get(1)
        return axes is not None and list(axes.ravel()) == [0]
    return False


def _chosen(node, values: dict) -> Optional[list]:
    """A Where or If on a known condition (the decode graph's ``refill``): the inputs it passes on
    (Where), or [the branch it runs] (If); None when the condition is not known."""
    if node.op_type not in ("Where", "If") or node.input[0] not in values:
        return None
    cond = bool(np.asarray(values[node.input[0]]).all())
    if node.op_type == "Where":
        return [node.input[1] if cond else node.input[2]]
    return [b for a in node.attribute if a.name == ("then_branch" if cond else "else_branch")
            for b in [a.g]]


@dataclass
class _Found:
    """What a walk collects over every graph it enters (shared by all of them)."""
    sites: list = field(default_factory=list)      # every Site found
    kernels: set = field(default_factory=set)      # MatMul-like and recurrent op types seen
    nbits: set = field(default_factory=set)        # MatMulNBits (bits, block_size, accuracy_level)
    widths: dict = field(default_factory=dict)     # value -> its last dimension, where known
    rowcount: dict = field(default_factory=dict)   # untimed value -> its rows, when more than one


@dataclass
class _Scope:
    """The names one graph sees: its own and those of the graphs around it."""
    weights: dict        # initializer -> dims
    nbytes: dict         # initializer -> its bytes as stored
    consts: dict         # initializer or Constant output -> shape
    values: dict         # small known values: initializers of <= 8 elements, refill, folded Wheres
    time: set            # values carrying the pass's time axis (a body starts with none)
    loops: tuple         # the Loop/Scan bodies the graph sits in, outermost first


def _enter(graph, outer: _Scope, time: set, loops: tuple) -> _Scope:
    """The scope of ``graph`` inside ``outer``: its initializers added to what it sees."""
    from onnx import numpy_helper
    dims = {t.name: tuple(t.dims) for t in graph.initializer}
    small = {t.name: numpy_helper.to_array(t) for t in graph.initializer
             if len(t.dims) <= 1 and int(np.prod(t.dims)) <= 8 and not t.data_location}
    nbytes = {t.name: _tensor_bytes(t) for t in graph.initializer}
    return _Scope({**outer.weights, **dims}, {**outer.nbytes, **nbytes}, {**outer.consts, **dims},
                  {**outer.values, **small}, time, loops)


def _tensor_bytes(t) -> int:
    """An initializer's bytes as stored, from its dims and type (its data is not read)."""
    from onnx import helper
    return int(np.prod(t.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def _walk(graph, outer: _Scope, time: set, loops: tuple, found: _Found) -> None:
    scope = _enter(graph, outer, time, loops)
    for node in graph.node:
        _visit(node, scope, found)


def _visit(node, s: _Scope, found: _Found) -> None:
    """One node: its constants, its site, the graphs it holds, which outputs carry the tokens."""
    from mof.writer.onnx_walk import node_graphs
    _fold_constants(node, s)
    chosen = _chosen(node, s.values)
    if node.op_type == "If" and chosen is not None:
        _walk_branch(node, chosen[0], s, found)
        return
    read = [i for i in (chosen if chosen is not None else node.input) if i]
    timed = any(i in s.time for i in read)
    rows = _rows(node, read, timed, s, found)
    _track_widths(node, read, s, found.widths)
    _add_site(node, rows, s, found)
    for body in node_graphs(node):
        kind = node.op_type if node.op_type in ("Loop", "Scan") else "If"
        _walk(body, s, set(), s.loops + ((kind,) if kind != "If" else ()), found)
    if not s.loops:
        s.time.update(o for o in _timed_outputs(node, timed, s) if o)


def _fold_constants(node, s: _Scope) -> None:
    """A Constant's shape; a Where on known values (e.g. on ``refill``) folded."""
    from onnx import numpy_helper
    if node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                s.consts[node.output[0]] = tuple(numpy_helper.to_array(a.t).shape)
    if node.op_type == "Where" and all(i in s.values for i in node.input):
        s.values[node.output[0]] = np.where(s.values[node.input[0]], s.values[node.input[1]],
                                            s.values[node.input[2]])


def _walk_branch(node, branch, s: _Scope, found: _Found) -> None:
    """The branch an If's known condition runs, walked in this scope: its outputs are the If's."""
    _walk(branch, s, s.time, s.loops, found)
    for out, branch_out in zip(node.output, (o.name for o in branch.output)):
        if branch_out in s.time and not s.loops:
            s.time.add(out)
        found.rowcount[out] = found.rowcount.get(branch_out, 1)
        if branch_out in found.widths:
            found.widths[out] = found.widths[branch_out]


def _rows(node, read: list, timed: bool, s: _Scope, found: _Found):
    """Site.rows of the node (TOKENS, ONE_ROW or a count), recording its outputs' row counts:
    an untimed value with more than one row is one row broadcast against a constant [n, ..., E]."""
    many = max([found.rowcount.get(i, 1) for i in read]
               + [int(np.prod(s.consts[i][:-1])) for i in read if i in s.consts and len(s.consts[i]) > 1
                  and node.op_type in ("Mul", "Add", "Sub", "Div")])
    if many > 1 and node.op_type not in ("Shape", "Size", "Gather") and not _one_row(node, s.values):
        found.rowcount.update({o: many for o in node.output if o})
    in_body = bool(s.loops)
    return TOKENS if timed and not in_body else many if many > 1 and not in_body else ONE_ROW


def _track_widths(node, read: list, s: _Scope, widths: dict) -> None:
    """Last dimensions: a Reshape's constant width, kept through the ops that keep the last axis
    (an int8 product's scale, a Transpose of the leading axes) — the sizes of a later product of
    two computed operands (a weight product's columns are added by ``_add_site``)."""
    last = [widths[i] for i in read if i in widths]
    if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in s.values \
            and int(np.asarray(s.values[node.input[1]]).ravel()[-1]) > 0:
        widths[node.output[0]] = int(np.asarray(s.values[node.input[1]]).ravel()[-1])
    elif last and (node.op_type in ("Mul", "Add", "Sub", "Div", "Identity", "Where", "Slice")
                   or node.op_type == "Transpose"
                   and list(_attrs(node)["perm"])[-1] == len(_attrs(node)["perm"]) - 1):
        widths[node.output[0]] = last[0]


def _add_site(node, rows, s: _Scope, found: _Found) -> None:
    """The node's Site, if it is a MatMul-like or recurrent node."""
    if node.op_type in MATMUL_OPS:
        found.kernels.add(node.op_type)
        site = _matmul_site(node, s.weights, rows, s.loops, found.widths)
        if site and _step_product(node) and site.rows == ONE_ROW:
            site = replace(site, weight=node.input[1], weight_bytes=_stored_bytes(node, s))
        if site:
            found.sites.append(site)
            found.widths[node.output[0]] = site.n
        if node.op_type == "MatMulNBits":
            a = _attrs(node)
            found.nbits.add((int(a.get("bits", 4)), int(a["block_size"]), int(a.get("accuracy_level", 0))))
    elif node.op_type in RECURRENT_OPS:
        found.kernels.add(node.op_type)
        site = _recurrent_site(node, s, rows, s.loops)
        if site:
            found.sites.append(site)


def _timed_outputs(node, timed: bool, s: _Scope) -> list:
    """The outputs that carry the time axis."""
    outs = list(node.output)
    if node.op_type == "Loop":                     # a body may read outer tokens implicitly:
        return outs[len(node.input) - 2:]          # its scan outputs run along the tokens; the
    if node.op_type == "Scan":                     # carried values are final states
        carried = len(node.input) - int(_attrs(node).get("num_scan_inputs", 0))
        return outs[carried:]
    if not timed or node.op_type in ("Shape", "Size") or _one_row(node, s.values):
        return []
    if node.op_type == "Gather" and _scalar(s.consts, node.input[1]) and node.input[0] in s.time:
        return []                                  # one position of the tokens
    if node.op_type in RECURRENT_OPS:
        return outs[:1]                            # Y; Y_h / Y_c are final states
    return outs


def count_sites(path: Path, refill: bool = True) -> Optional[GraphMacs]:
    """The MatMul-like sites of the ONNX graph at ``path`` (its weights are not read) for a pass
    with the decode graph's ``refill`` input set to ``refill`` (a window pass; False: a step-graph
    call), or None when the onnx package is not installed."""
    try:
        import onnx
    except ImportError:
        return None
    from mof.runtime.contract import REFILL_INPUT
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    time = {i.name for i in g.input if any(d.dim_param == TIME_DIM for d in i.type.tensor_type.shape.dim)}
    root = _Scope({}, {}, {}, {REFILL_INPUT: np.array(refill)}, time, ())
    found = _Found()
    _walk(g, root, time, (), found)
    return GraphMacs(tuple(found.sites), tuple(sorted(found.kernels)), tuple(sorted(found.nbits)))
