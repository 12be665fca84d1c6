"""benchmarks/window_passes.py on the demo bundle: every graph gets the same number of timings of
every pass, whatever its place in the order (rotated each round), and a bad --settle is one line."""

import json
from pathlib import Path

import pytest
from mof_testing import script_module

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "window_passes.py"


@pytest.fixture(scope="module")
def wp():
    with script_module(SCRIPT) as module:
        yield module


def test_rotated_rounds_time_every_graph_alike(wp, demo_bundle, tmp_path, monkeypatch):
    order = []
    real = wp.time.sleep
    monkeypatch.setattr(wp.time, "sleep", lambda s: order.append(s) or real(0))
    graphs = {"a": demo_bundle / "decode.onnx", "b": demo_bundle / "decode.int8.onnx",
              "c": demo_bundle / "decode.int4.onnx"}
    cases = wp.passes(wp.load_config(demo_bundle))
    times = wp.time_interleaved(graphs, demo_bundle, cases, rounds=3, threads=1, step_reps=2, settle=0.25)
    assert [s for s in order if s == 0.25] == [0.25] * 9        # one quiet pause per graph and round
    assert [wp.rotated(list(graphs), k) for k in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert wp.rotated([], 3) == []
    for g in graphs:
        assert {c: len(v) for c, v in times[g].items()} == {c: 2 * 3 if c == "step" else 3 * 3 for c in cases}
        assert all(ms > 0 for v in times[g].values() for ms in v)


def test_the_report_and_a_bad_settle(wp, demo_bundle, tmp_path, capsys):
    out = tmp_path / "wp.json"
    assert wp.main([str(demo_bundle / "decode.onnx"), str(demo_bundle / "decode.int8.onnx"), "--rounds", "1",
                    "--settle", "0", "--steps-only", "--step-reps", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["graphs"]) == {"decode.onnx", "decode.int8.onnx"}
    with pytest.raises(SystemExit) as e:
        wp.main([str(demo_bundle / "decode.onnx"), "--settle", "-1"])
    assert e.value.code == 2 and "--settle must be between 0 and 60 seconds" in capsys.readouterr().err
