"""The MAC count of a window pass (mof.bench.macs) against what onnxruntime really runs: its
profiler records the input shape of every kernel call, Loop bodies included."""

import collections
import json

import numpy as np
import pytest

pytest.importorskip("onnx")                  # the count walks the graph with onnx ([quant] extra)

from mof.bench.macs import MATMUL_OPS, RECURRENT_OPS, count_sites  # noqa: E402

PRECISIONS = {"fp32": "decode.onnx", "int8": "decode.int8.onnx", "int4": "decode.int4.onnx"}


def profiled(path, feeds) -> collections.Counter:
    """(op, rows, K) -> calls, from onnxruntime's profile of one run (no graph optimisations, so
    the nodes are the graph's own)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = str(path.parent / "prof")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    events = json.loads(open(sess.end_profiling()).read())
    got = collections.Counter()
    for e in events:
        args = e.get("args", {})
        op = args.get("op_name")
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or \
                op not in MATMUL_OPS + RECURRENT_OPS:
            continue
        shape = list(args["input_type_shape"][0].values())[0]
        got[op, int(np.prod(shape[:-1])), shape[-1]] += 1
    return got


def executions(sites, tokens: int):
    """(op, rows per call, K, calls) per site of a pass over ``tokens`` tokens: what onnxruntime's
    profiler records of it."""
    for s in sites.sites:
        yield s.op, s.rows_per_call(tokens), s.k, s.calls(tokens)


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("tokens, refill", [(1, True), (7, True), (64, True), (7, False)])
def test_count_matches_the_kernels_onnxruntime_runs(demo_bundle, tmp_path, precision, tokens, refill):
    import shutil
    from mof.runtime.model import Model
    for f in demo_bundle.iterdir():                       # the profile is written beside the graph
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / PRECISIONS[precision]
    model = Model.load(demo_bundle, precision=precision)
    feeds = {**model.initial_state(1).feeds(model.config), "position": np.zeros(1, np.int64),
             "input_ids": (np.arange(tokens, dtype=np.int32) % 50 + 3)[None], "refill": np.array(refill)}
    sites = count_sites(path, refill=refill)     # a window pass, or a step-graph call (plain's prefill)
    want = collections.Counter()
    for op, rows, k, calls in executions(sites, tokens):
        if calls:
            want[op, rows, k] += calls
    assert profiled(path, feeds) == want
    # GRU's loop unrolled or not: every precision's graph does the same multiply-accumulates
    assert sites.macs(tokens) == count_sites(demo_bundle / "decode.onnx", refill=refill).macs(tokens)


def test_head_and_last_position_counted_once(demo_bundle):
    sites = count_sites(demo_bundle / "decode.onnx")
    one = {(s.k, s.n) for s in sites.sites if s.rows == "one"}
    assert (160, 3501) in one                             # the head: the last position only
    # T tokens: everything but the one-row sites grows linearly in T
    per_token = sites.macs(2) - sites.macs(1)
    assert sites.macs(11) - sites.macs(1) == 10 * per_token
