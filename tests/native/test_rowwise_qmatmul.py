"""mof.native::RowwiseQMatMul against the stock rowwise int8 subgraph (quant/rowwise.py's own output)
run by onnxruntime: every bit equal, on every kernel path this CPU has (AVX-512 VNNI, AVX2, scalar).
Skipped, with the loader's one-line reason, where the library cannot be built (no g++).

MOF_ORT_PYTHONS=/venv-a/bin/python:/venv-b/bin/python also runs the products under those Pythons'
onnxruntime (numpy + onnxruntime only), e.g. the lowest and highest supported versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mof.runtime.native import build  # noqa: E402
from qmatmul_graphs import write_cases  # noqa: E402
from run_cases import ISAS, compare, session  # noqa: E402

NATIVE = build()
if NATIVE.path is None:
    pytest.skip(NATIVE.note, allow_module_level=True)
PATHS = ISAS[ISAS.index(NATIVE.isa):]                       # this CPU's best path and every lower one


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("qmatmul")
    write_cases(d)
    return d


def check(rows: list[dict]) -> None:
    for r in [r for r in rows if "stock_error" in r]:
        print(f"onnxruntime {r['onnxruntime']} {r['isa']:>10} {r['name']:<26} stock graph fails: {r['stock_error']}")
    rows = [r for r in rows if "stock_error" not in r]
    assert rows, "no product ran"
    for r in rows:
        print(f"onnxruntime {r['onnxruntime']} {r['isa']:>10} {r['name']:<26} max|d| = {r['max_abs']:g}"
              f"{'' if r['bit_equal'] else '  (bits differ)'}")
    wrong = [f"{r['onnxruntime']} {r['isa']} {r['name']}: max|d| {r['max_abs']:g}" for r in rows if not r["bit_equal"]]
    assert not wrong, "native product differs from the stock graph: " + "; ".join(wrong)


@pytest.mark.parametrize("isa", PATHS)
def test_bit_equal_to_stock_graph(folder, isa):
    check(compare(folder, str(NATIVE.path), isa))


@pytest.mark.parametrize("python", [p for p in os.environ.get("MOF_ORT_PYTHONS", "").split(os.pathsep) if p]
                         or [pytest.param("", marks=pytest.mark.skip(reason="MOF_ORT_PYTHONS not set"))])
def test_bit_equal_under_other_onnxruntime(folder, python):
    done = subprocess.run([python, str(HERE / "run_cases.py"), str(folder), str(NATIVE.path), *PATHS],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    check([json.loads(line) for line in done.stdout.splitlines()])


def test_weights_outside_7_bits_are_refused(tmp_path):
    from onnx import TensorProto, helper, numpy_helper
    w = np.zeros((8, 4), np.int8)
    w[3, 1] = 65
    node = helper.make_node("RowwiseQMatMul", ["x", "w", "s"], ["y"], domain="mof.native")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(4, np.float32), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("mof.native", 1)],
                              ir_version=8)
    with pytest.raises(Exception, match=r"\[-64, 64\]"):
        session(model.SerializeToString(), str(NATIVE.path)).run(None, {"x": np.ones((1, 8), np.float32)})


def test_threads_do_not_change_a_bit(folder):
    x = np.load(folder / "1.x.npy")
    model = (folder / "1.native.onnx").read_bytes()
    one, two = (session(model, str(NATIVE.path), threads=t).run(None, {"x": x})[0] for t in (1, 2))
    assert np.array_equal(one.view(np.uint32), two.view(np.uint32))


def test_weights_fed_at_run_time_give_the_same_bits(folder):
    """W as a graph input (packed on every run, not once at kernel creation): the same output."""
    import onnx
    model = onnx.load_from_string((folder / "5.native.onnx").read_bytes())
    w = next(t for t in model.graph.initializer if t.name == "W/s8")
    model.graph.input.append(onnx.helper.make_tensor_value_info("W/s8", onnx.TensorProto.INT8, list(w.dims)))
    w_value = onnx.numpy_helper.to_array(w)
    model.graph.initializer.remove(w)
    x = np.load(folder / "5.x.npy")
    fed = session(model.SerializeToString(), str(NATIVE.path)).run(None, {"x": x, "W/s8": w_value})[0]
    const = session((folder / "5.native.onnx").read_bytes(), str(NATIVE.path)).run(None, {"x": x})[0]
    assert np.array_equal(fed.view(np.uint32), const.view(np.uint32))


def test_infinities_match_and_a_nan_makes_its_row_nan_on_every_path(monkeypatch):
    """±inf: bit for bit the stock graph. A NaN: the whole row NaN on every kernel path (the stock
    graph's ReduceMax keeps a NaN or drops it depending on where it sits: not compared)."""
    from qmatmul_graphs import graphs
    rng = np.random.default_rng(3)
    stock_bytes, native_bytes = graphs(rng.normal(size=(100, 40)).astype(np.float32))
    x = rng.normal(size=(6, 100)).astype(np.float32)
    x[0, 7], x[1, 96], x[2, 3], x[2, 4] = np.inf, -np.inf, np.inf, -np.inf
    x[3, 0], x[4, 50], x[5, 99] = np.nan, np.nan, np.nan
    stock = session(stock_bytes, None).run(None, {"x": x})[0]
    outs = []
    for isa in PATHS:
        monkeypatch.setenv("MOF_NATIVE_ISA", isa)
        outs.append(session(native_bytes, str(NATIVE.path)).run(None, {"x": x})[0])
        assert np.array_equal(stock[:3].view(np.uint32), outs[-1][:3].view(np.uint32)), isa
        assert np.isnan(outs[-1][3:]).all(), isa
    assert all(np.array_equal(o.view(np.uint32), outs[0].view(np.uint32)) for o in outs)
