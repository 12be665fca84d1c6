"""benchmarks/qkv_layouts.py and benchmarks/steady_memory.py: each layout computes what
mof-export's computes (fp32 and int8), and the memory breakdown runs on the demo bundle."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from mof_testing import script_module

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def layouts():
    pytest.importorskip("onnx")             # the stand-in graphs are built with onnx ([quant] extra)
    with script_module(BENCH / "qkv_layouts.py") as module:
        yield module


@pytest.fixture(scope="module")
def steady_memory():
    with script_module(BENCH / "steady_memory.py") as module:
        yield module


def test_every_layout_computes_the_same(layouts):
    import onnxruntime as ort
    from mof.quant.rowwise import quantize_rowwise
    x = np.random.default_rng(3).standard_normal((7, 1, layouts.E)).astype(np.float32)
    for prec in ("fp32", "int8"):
        outs = []
        for layout in layouts.LAYOUTS:
            model = layouts.build(layout)
            if prec == "int8":
                model = quantize_rowwise(model)
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            outs.append(sess.run(None, {"x": x})[0])
        assert outs[0].shape == (layouts.BLOCKS * 7, 1, layouts.H, layouts.DH)
        # the same function (within float rounding: SGEMM blocks N apart, Elu's vector tails)
        for layout, y in zip(layouts.LAYOUTS[1:], outs[1:]):
            np.testing.assert_allclose(y, outs[0], atol=1e-4, err_msg=f"{prec} {layout}")
        assert np.abs(outs[0]).max() > 0.1                              # not a graph of zeros


def test_layouts_refuse_to_overwrite(layouts, tmp_path, capsys):
    (tmp_path / "qkv_layouts.json").write_text("{}")
    assert layouts.main(["--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        layouts.main(["--rounds", "0", "--out", str(tmp_path)])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="smaps and malloc_trim are Linux's")
def test_steady_memory_on_the_demo(steady_memory, demo_bundle, tmp_path, capsys):
    sm = steady_memory
    assert sm.main([str(demo_bundle), "--passes", "2", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "steady_memory-int8.json").read_text())
    assert report["weights_mb"] > 0
    for name in sm.VARIANTS:
        stages = report["variants"][name]["stages"]
        assert list(stages) == ["loaded", "after 3 exact passes", "after malloc_trim(0)", "after 2 more passes"]
        assert stages["loaded"]["heap and anonymous"] > 0          # the packed weights at least
        assert report["variants"][name]["exact_ms_median"] > 0
    assert "| default | loaded |" in (tmp_path / "steady_memory-int8.md").read_text()
    assert sm.main([str(demo_bundle), "--passes", "2", "--out", str(tmp_path)]) == 2   # no overwrite
    assert "--force" in capsys.readouterr().err


def test_steady_memory_errors(steady_memory, tmp_path, capsys):
    sm = steady_memory
    with pytest.raises(SystemExit) as e:
        sm.main([str(tmp_path)])
    assert e.value.code == 2 and "not a bundle" in capsys.readouterr().err
