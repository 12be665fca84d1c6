"""The JavaScript package (js/) on a bundle with native graphs: `mof-quantize --native` on a copy of
the demo adds fused int8 graphs (*.int8.native.onnx, `graphs.<g>.int8_native`, a top-level `native`
record) whose mof.native ops only the Python runtime can load. The JS package must ignore them:
with onnxruntime-node, `loadModel(copy, {precision: 'int8', selfCheck: true})` opens the stock
*.int8.onnx graphs (the files it reports; onnxruntime-node itself refuses each fused file, so a
package that opened one could not have loaded), its self-check passes, and it decodes what
mof.runtime decodes on the same copy with its native kernels: tests/js/write_fixture.py's int8 cases
(Python's draws replayed: the same ids, replies, stops, refills, positions) and logits windows
(exact and stream; max |d| printed, at most 1e-5, argmax equal). tests/js/native_bundle.mjs is
the node half.

Needs Node.js, `npm ci --prefix js`, and the native library (skipped when mof.runtime.native.build()
cannot build it, as tests/native)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mof.runtime import DEFAULT_BUNDLE, Model

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
NODE = shutil.which("node")
SCRIPT = Path(__file__).with_name("native_bundle.mjs")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js is not installed (the JS package's tests need node >= 18)"),
    pytest.mark.skipif(not (JS / "node_modules" / "onnxruntime-node").is_dir(),
                       reason="js/node_modules lacks onnxruntime-node: run  npm ci --prefix js"),
]
sys.path.insert(0, str(Path(__file__).parent))
import write_fixture  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A copy of the demo bundle with mof-quantize --native's fused int8 graphs."""
    pytest.importorskip("onnx")
    from mof.runtime.native import build
    native = build()
    if native.path is None:
        pytest.skip(native.note)
    from mof.quant.cli import main
    out = tmp_path_factory.mktemp("js-native") / "demo.mof"
    shutil.copytree(DEFAULT_BUNDLE, out)
    assert main([str(out), "--native", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def fixture(bundle) -> dict:
    """What mof.runtime decodes on the native copy (int8: its native kernels), for node to reproduce."""
    keep, skipped = write_fixture.comparable_precisions(bundle)
    if "int8" not in keep:
        pytest.skip(f"int8 is not compared: {skipped['int8']}")
    out = bundle.parent / "fixture.json"
    assert write_fixture.main([str(out), "--bundle", str(bundle), "--precision", "int8", "--no-broken"]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report(fixture, bundle) -> dict:
    """The JS package run on the native copy by node, once: its JSON report (native_bundle.mjs)."""
    proc = subprocess.run([NODE, str(SCRIPT), str(bundle.parent / "fixture.json")], cwd=JS,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"the JS package failed on the native bundle:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def test_the_copy_has_native_graphs_and_python_runs_them(bundle):
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert m["native"]["domain"] == "mof.native"
    assert all(m["graphs"][g]["int8_native"].endswith(".int8.native.onnx") for g in ("step", "chunk", "decode"))
    assert Model.load(bundle, precision="int8").kernels.startswith("native")   # the fixture's logits are theirs


def test_the_js_package_opens_the_stock_int8_graphs_not_the_native_ones(bundle, report):
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    stock = {g: m["graphs"][g]["int8"] for g in report["files"]}
    assert report["files"] == stock and set(report["sessions"]) == set(stock), report["files"]
    assert not any(f.endswith(".native.onnx") for f in report["files"].values())
    # and the fused graphs are not something the package could have opened and run anyway:
    natives = {m["graphs"][g]["int8_native"] for g in m["graphs"] if "int8_native" in m["graphs"][g]}
    assert set(report["nativeOpen"]) == natives
    for file, error in report["nativeOpen"].items():
        assert error is not None and "mof.native" in error, f"onnxruntime-node opened {file}: {error}"


def test_the_js_self_check_passes_on_the_native_bundle(report):
    sc = report["selfCheck"]
    print(f"onnxruntime-node {report['onnxruntime']}: {sc['line']}")
    assert sc["passed"] and sc["rows"] == sc["top1Agree"] > 0, sc["line"]


def test_the_js_package_decodes_what_mof_runtime_decodes(fixture, report):
    assert [c["name"] for c in report["cases"]] == [c["name"] for c in fixture["cases"]] != []
    tokens = 0
    for want, got in zip(fixture["cases"], report["cases"]):
        for i, (w, g) in enumerate(zip(want["turns"], got["turns"], strict=True)):
            where = f"{want['name']} turn {i}"
            assert g["ids"] == w["ids"], where
            assert g["drawn"] == len(w["draws"]), where
            assert (g["output"], g["stopped_by"], g["refills"], g["position"]) == \
                (w["output"], w["stopped_by"], w["refills"], w["position"]), where
            tokens += len(w["ids"])
    windows = fixture["logits"]["int8"]
    assert len(report["logits"]) == len(windows)
    worst = 0.0
    for want, got in zip(windows, report["logits"]):
        a, b = np.asarray(want["logits"], np.float32), np.asarray(got, np.float32)
        assert a.shape == b.shape and int(a.argmax()) == int(b.argmax())
        worst = max(worst, float(np.abs(a - b).max()))
    print(f"JS int8 (stock graphs, onnxruntime-node {report['onnxruntime']}) against mof.runtime int8 (native "
          f"kernels): {len(fixture['cases'])} cases, {tokens} tokens equal; max |logit d| {worst:.3g} "
          f"over {len(windows)} windows")
    assert worst <= 1e-5, worst
