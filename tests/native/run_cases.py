"""Run tests/native's products on the onnxruntime of the Python that runs this: the stock graph and
mof.native::RowwiseQMatMul, each kernel path this CPU has (MOF_NATIVE_ISA), and print one JSON line
per product: max |stock - native| and whether every bit is equal. Needs numpy and onnxruntime only,
so any venv with another onnxruntime can run it on a folder that write_cases() filled:

    python tests/native/run_cases.py DIR LIBRARY
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ISAS = ("avx512vnni", "avx2", "scalar")


def session(model: bytes, library, threads: int = 2, spin: bool = True):
    """A session as mof makes them (all graph optimizations); ``spin=False``: the pool's threads
    sleep between runs (benchmarks interleaving several sessions, whose idle pools would spin)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if library:
        so.register_custom_ops_library(library)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def compare(folder: Path, library: str, isa: str) -> list[dict]:
    """One dict per case: name, isa, onnxruntime version, max_abs, bit_equal (or stock_error where the
    stock graph itself fails: nothing to compare with)."""
    import onnxruntime as ort
    os.environ["MOF_NATIVE_ISA"] = isa                   # read when the library registers its ops
    out = []
    for case in json.loads((folder / "cases.json").read_text()):
        x = np.load(folder / f"{case['id']}.x.npy")
        row = {"name": case["name"], "isa": isa, "onnxruntime": ort.__version__}
        try:
            stock = session((folder / f"{case['id']}.stock.onnx").read_bytes(), None).run(None, {"x": x})[0]
        except Exception as e:      # onnxruntime < 1.32 fails the stock graph on x [0, K] (its Mul broadcast)
            out.append({**row, "stock_error": str(e).splitlines()[0][-160:]})
            continue
        native = session((folder / f"{case['id']}.native.onnx").read_bytes(), library).run(None, {"x": x})[0]
        same_shape = stock.shape == native.shape
        diff = float(np.max(np.abs(stock - native), initial=0.0)) if same_shape else float("inf")
        out.append({**row, "max_abs": diff, "bit_equal": same_shape and np.array_equal(stock.view(np.uint32), native.view(np.uint32))})
    return out


def main(argv: list[str]) -> int:
    folder, library = Path(argv[0]), argv[1]
    for isa in (argv[2:] or ISAS):
        for row in compare(folder, library, isa):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
