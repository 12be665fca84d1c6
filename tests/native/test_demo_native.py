"""What a native op must pass to be used, on the demo bundle: its int8 step, chunk and decode
graphs with every dynamic rowwise product fused into mof.native::RowwiseQMatMul and every GRU into
mof.native::QGru (mof.quant.native.fuse) give the stock graphs' outputs (logits and states) bit for bit, on each kernel path this CPU has."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mof.runtime.native import build  # noqa: E402
from mof.quant.native import fuse, probe_feeds  # noqa: E402
from mof.runtime.bundle import verify_bundle  # noqa: E402
from run_cases import ISAS, session  # noqa: E402

NATIVE = build()
if NATIVE.path is None:
    pytest.skip(NATIVE.note, allow_module_level=True)
PATHS = ISAS[ISAS.index(NATIVE.isa):]
DEMO = next((Path(__file__).resolve().parents[2] / "runtime" / "demo").glob("*/manifest.json")).parent
SIZES = {"batch": 2, "chunk": 3, "seq": 37}


def feeds(sess, rng, refill=None) -> dict:
    """mof-quantize --native's probe inputs (GRU states stay in [-1, 1]) at SIZES."""
    return probe_feeds(sess, verify_bundle(DEMO).config, SIZES, rng, refill)


@pytest.fixture(scope="module")
def graphs():
    out = {}
    for name in ("step", "chunk", "decode"):
        model = onnx.load(str(DEMO / f"{name}.int8.onnx"))
        stock = model.SerializeToString()
        fused = fuse(model)                       # (products, GRUs)
        out[name] = (stock, model.SerializeToString(), fused)
    return out


@pytest.mark.parametrize("isa", PATHS)
@pytest.mark.parametrize("name,refill", [("step", None), ("chunk", None), ("decode", False), ("decode", True)])
def test_demo_outputs_bit_for_bit(graphs, name, refill, isa, monkeypatch):
    stock_bytes, native_bytes, fused = graphs[name]
    assert fused[0] >= 19 and fused[1] == 3, f"only {fused} (products, GRUs) fused in {name}"
    monkeypatch.setenv("MOF_NATIVE_ISA", isa)
    stock, native = session(stock_bytes, None), session(native_bytes, str(NATIVE.path))
    feed = feeds(stock, np.random.default_rng(7), refill)
    names = [o.name for o in stock.get_outputs()]
    for out, a, b in zip(names, stock.run(names, feed), native.run(names, feed)):
        diff = float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
        print(f"{name} refill={refill} {isa}: {out} max|d| = {diff:g}")
        assert a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{out}: max|d| {diff:g}"
