"""mof-quantize --native on a copy of the demo bundle, and Model.load's choice of kernels: the fused
int8 graphs read the same weights file, give the stock graphs' logits bit for bit (exact windows and
stream decoding with refills, max |d| printed) and the same tokens, pass the bundle's self-check;
auto falls back to stock when the library cannot be built, native=True then refuses; the stock
readers still verify and load such a bundle."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from mof.runtime.bundle import verify_bundle  # noqa: E402
from mof.runtime.contract import NATIVE_FILES  # noqa: E402
from mof.runtime.decoder import StreamDecoder  # noqa: E402
from mof.runtime.errors import MofError  # noqa: E402
from mof.runtime.generate import generate  # noqa: E402
from mof.runtime.model import Model  # noqa: E402
from mof.runtime.native import build  # noqa: E402
from mof.runtime.sampling import SamplingConfig  # noqa: E402

NATIVE = build()
if NATIVE.path is None:
    pytest.skip(NATIVE.note, allow_module_level=True)
DEMO = next((Path(__file__).resolve().parents[2] / "runtime" / "demo").glob("*/manifest.json")).parent


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from mof.quant.cli import main
    out = tmp_path_factory.mktemp("native") / "demo.mof"
    shutil.copytree(DEMO, out)
    assert main([str(out), "--native", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def models(bundle):
    return Model.load(bundle, precision="int8", native=False), Model.load(bundle, precision="int8")


def _external(path: Path) -> dict:
    """initializer name -> (location, offset, length) of a graph's external data."""
    m = onnx.load(str(path), load_external_data=False)
    return {t.name: tuple(e.value for e in t.external_data) for t in m.graph.initializer if t.external_data}


def test_manifest_records_the_fused_graphs_beside_the_same_weights(bundle):
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["native"]["domain"] == "mof.native" and m["native"]["ops"] == ["RowwiseQMatMul", "QGru"]
    assert m["native"]["abi"] == 17 and m["native"]["precisions"]["int8"]["checked"]["bit_equal"] is True
    record = m["native"]["precisions"]["int8"]                    # the demo's 3 GRUs, 19 products per graph
    assert record["fused_grus"] == {"step": 3, "chunk": 3, "decode": 3}
    assert record["fused_products"] == {"step": 19, "chunk": 19, "decode": 19}
    for name, file in NATIVE_FILES["int8"].items():
        assert m["graphs"][name]["int8_native"] == file and file in m["files"]
        fused, stock = _external(bundle / file), _external(bundle / m["graphs"][name]["int8"])
        assert fused and all(stock[k] == v for k, v in fused.items())    # same file, same offsets
        assert {v[0] for v in fused.values()} == {"weights.int8.bin"}
    demo = json.loads((DEMO / "manifest.json").read_text())
    for f, rec in demo["files"].items():            # nothing of the stock bundle rewritten
        if f != "manifest.json":
            assert m["files"][f] == rec and _sha(bundle / f) == rec["sha256"], f
    assert sorted(set(m["files"]) - set(demo["files"])) == sorted(NATIVE_FILES["int8"].values())


def test_exact_logits_bit_equal_over_several_windows(models):
    stock, native = models
    assert stock.kernels == "stock" and native.kernels.startswith("native")
    rng = np.random.default_rng(3)
    worst = 0.0
    for T in (1, 7, stock.config.window, stock.config.window + 9):
        ids = rng.integers(0, stock.config.vocab_size, size=(2, T))
        a, b = stock.exact_logits(ids), native.exact_logits(ids)
        worst = max(worst, float(np.max(np.abs(a - b))))
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), T
    print(f"exact logits, native vs stock: max |d| = {worst:g}")


def test_stream_decoding_with_refills_bit_equal(models):
    stock, native = models
    ids = np.random.default_rng(5).integers(0, stock.config.vocab_size, size=3 * stock.config.window)
    decs = [StreamDecoder(m, refill_every=4) for m in models]
    worst = 0.0
    for i in range(0, len(ids), 3):
        a, b = (d.feed(ids[i:i + 3].tolist()) for d in decs)
        worst = max(worst, float(np.max(np.abs(a - b))))
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), i
    assert decs[0].refills == decs[1].refills > 3
    for f in stock._state_fields:
        assert np.array_equal(getattr(decs[0].state, f), getattr(decs[1].state, f)), f
    print(f"stream, R=4, {decs[1].refills} refills, native vs stock: max |d| = {worst:g}")


def test_same_tokens_and_self_check(models):
    stock, native = models
    cfg = SamplingConfig(seed=11, max_tokens=40)
    for mode in ("exact", "stream"):
        a, b = ("".join(generate(m, "你好", cfg, mode=mode)) for m in models)
        assert a == b and a, mode
    assert native.self_check(required=True).passed


def test_auto_falls_back_when_the_library_cannot_be_built(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent")
    monkeypatch.setenv("MOF_NATIVE_CACHE", str(tmp_path / "empty"))
    m = Model.load(bundle, precision="int8")
    assert m.kernels == "stock" and "not available" in m.kernels_note and "\n" not in m.kernels_note
    assert m.sessions["decode"]._model_path.endswith("decode.int8.onnx")
    with pytest.raises(MofError, match="native kernels required"):
        Model.load(bundle, precision="int8", native=True)


def test_graphs_with_ops_this_library_cannot_match_run_stock(bundle, monkeypatch):
    """Fused graphs needing an op the library lacks (a newer bundle), or QGru on a CPU without FMA
    (where onnxruntime's sigmoid and tanh are other kernels), run stock, saying why in one line."""
    import dataclasses

    from mof.runtime import native as rn
    m = Model.load(bundle, precision="int8")
    assert m.kernels.startswith("native")
    newer = json.loads((bundle / "manifest.json").read_text())
    newer["native"]["ops"].append("QLstm")
    monkeypatch.setattr(rn, "build", lambda: NATIVE)
    from mof.runtime.model import _usable
    got = _usable(NATIVE, newer)
    assert got.path is None and "need QLstm, which this mof's library lacks" in got.note
    assert _usable(NATIVE, json.loads((bundle / "manifest.json").read_text())) is NATIVE
    monkeypatch.setattr(rn, "build", lambda: dataclasses.replace(NATIVE, fma=False))
    m = Model.load(bundle, precision="int8")
    assert m.kernels == "stock" and "no FMA" in m.kernels_note and "\n" not in m.kernels_note
    with pytest.raises(MofError, match="native kernels required, but native ops: this CPU has no FMA"):
        Model.load(bundle, precision="int8", native=True)


def test_stock_readers_keep_reading_the_bundle(bundle):
    verify_bundle(bundle)
    m = Model.load(bundle, precision="int8", native=False)
    assert m.sessions["decode"]._model_path.endswith("decode.int8.onnx") and m.kernels == "stock"
    assert Model.load(bundle).kernels == "stock"                   # fp32: no fused graphs
    with pytest.raises(MofError, match="no native fp32 graphs"):
        Model.load(bundle, native=True)


def test_a_fused_graph_that_differs_is_refused_and_nothing_written(tmp_path, monkeypatch):
    from mof.quant import native as qn
    real = qn.fuse_rowwise

    def wrong(model):              # drop one fused product's bias: its outputs must differ
        n = real(model)
        node = next(n for g in qn.all_graphs(model.graph) for n in g.node
                    if n.op_type == "RowwiseQMatMul" and len(n.input) == 4)
        del node.input[3]
        return n
    monkeypatch.setattr(qn, "fuse_rowwise", wrong)
    out = tmp_path / "demo.mof"
    shutil.copytree(DEMO, out)
    before = {p.name: _sha(p) for p in out.iterdir()}
    with pytest.raises(MofError, match="differs from .*nothing written"):
        qn.add_native_graphs(out, log=lambda m: None)
    assert {p.name: _sha(p) for p in out.iterdir()} == before and sorted(tmp_path.iterdir()) == [out]


def test_requantizing_int8_drops_its_fused_graphs():
    from mof.writer.manifest import add_native, add_precision, native_record
    m = {"graphs": {"step": {"fp32": "step.onnx", "int8": "step.int8.onnx"}}}
    m = add_native(m, "int8", {"step": "step.int8.native.onnx"}, native_record({"step": 3}, "avx2", 2))
    assert m["graphs"]["step"]["int8_native"] == "step.int8.native.onnx" and m["native"]["precisions"]["int8"]
    kept = add_precision(m, "int4", {}, {})
    assert kept["graphs"]["step"]["int8_native"] and kept["native"]
    redone = add_precision(m, "int8", {}, {})
    assert "int8_native" not in redone["graphs"]["step"] and "native" not in redone


def _mof_run(bundle, *flags, env=None):
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "mof.runtime.cli", "--model", str(bundle), "--int8", "--prompt",
                           "你好", "--max-tokens", "3", "--seed", "1", *flags], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr.splitlines()


def test_mof_run_says_which_kernels_run(bundle, tmp_path):
    code, out, err = _mof_run(bundle)
    assert code == 0 and err[0].endswith(f"int8, kernels: native ({NATIVE.isa})")
    code, out_stock, err = _mof_run(bundle, "--no-native")
    assert code == 0 and err[0].endswith("int8, kernels: stock") and out_stock == out      # same tokens
    code, _, err = _mof_run(bundle, env={"CXX": "/nonexistent", "MOF_NATIVE_CACHE": str(tmp_path / "none")})
    assert code == 0 and err[0].endswith("kernels: stock") and err[1].startswith("mof-run: note: native ops: not")
    code, _, err = _mof_run(bundle, "--native", env={"CXX": "/nonexistent", "MOF_NATIVE_CACHE": str(tmp_path / "none")})
    assert code == 1 and err == ["mof-run: error: native kernels required, but native ops: not available "
                                 "(no C++ compiler: set CXX or install g++)"]


def test_native_graphs_are_redone_only_with_force(bundle, tmp_path):
    from mof.quant import native as qn
    out = tmp_path / "again.mof"
    shutil.copytree(bundle, out)
    before = {p.name: _sha(p) for p in out.iterdir()}
    with pytest.raises(MofError, match="already has native graphs"):
        qn.add_native_graphs(out, log=lambda m: None)
    assert {p.name: _sha(p) for p in out.iterdir()} == before
    qn.add_native_graphs(out, force=True, log=lambda m: None)
    after = {p.name: _sha(p) for p in out.iterdir()}
    assert {k: v for k, v in after.items() if k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}                 # the same graphs, once
    verify_bundle(out)


def test_the_profile_shows_the_loops_gone(bundle, capsys):
    """benchmarks/native_profile.py on the demo's chunk graph: the stock graph runs its GRUs as 3
    Loops, the fused one as 3 QGru runs and no Loop, with fewer op runs."""
    from mof_testing import script_module
    with script_module(Path(__file__).resolve().parents[2] / "benchmarks" / "native_profile.py") as bench:
        assert bench.main([str(bundle), "--graph", "chunk", "--tokens", "16", "--runs", "1", "--top", "40"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")}
    assert rows["Loop"][0].endswith("/ 3") and rows["Loop"][1].strip(" |") == "-"
    assert rows["QGru"][0] == "-" and rows["QGru"][1].strip(" |").endswith("/ 3")
    stock_runs, native_runs = (int(c.split("/ ")[1].split()[0]) for c in rows["**a run (profiled)**"])
    assert native_runs < stock_runs
