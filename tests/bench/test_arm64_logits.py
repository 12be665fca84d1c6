"""benchmarks/arm64_logits.py's native parts on the demo bundle (its emulated runs are .ci/arm64's,
which CI runs itself): the logits dump, the comparison (a changed logit is found, and named), and
one-line errors for a bad command line; .ci/arm64's own argument errors."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from mof_testing import script_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "arm64_logits.py"


@pytest.fixture(scope="module")
def al():
    with script_module(SCRIPT) as module:
        yield module


@pytest.fixture(scope="module")
def demo_dump(al, demo_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("dump")
    return dict(np.load(al.dump(demo_bundle, out), allow_pickle=False))


def test_dump_holds_every_precision_and_case(al, demo_dump):
    V = 3501                                              # the demo's vocabulary
    for p in ("fp32", "int8", "int4"):
        shapes = {k.split("/", 1)[1]: v.shape for k, v in demo_dump.items() if k.startswith(p + "/")}
        assert shapes == {"exact 4x128": (4, V), "exact 1x128 (each row)": (4, V), "exact 4x8": (4, V),
                          "chunk 4x128": (4, V), "stream 4x(8+16)": (17, 4, V), "stream 1x(8+16)": (17, 1, V)}
    # batch 1 and batch 4 are the same rows: their fp32 logits agree to rounding
    np.testing.assert_allclose(demo_dump["fp32/exact 1x128 (each row)"], demo_dump["fp32/exact 4x128"], atol=1e-4)
    np.testing.assert_allclose(demo_dump["fp32/stream 1x(8+16)"][:, 0], demo_dump["fp32/stream 4x(8+16)"][:, 0],
                               atol=1e-4)
    assert str(demo_dump["arch"]) == al.platform.machine()


def test_compare_finds_a_changed_logit_and_names_its_case(al, demo_dump):
    same = al.compare(demo_dump, demo_dump)
    assert set(same) == {"fp32", "int8", "int4"}
    rows = 4 + 4 + 4 + 4 + 17 * 4 + 17
    assert all(r["max_abs"] == 0.0 and r["top1_agree"] == r["rows"] == rows for r in same.values())
    changed = dict(demo_dump)
    logits = changed["int8/stream 4x(8+16)"].copy()
    top = logits[3, 2].argmax()
    logits[3, 2, top] -= 100.0                            # one row's largest logit pushed down
    changed["int8/stream 4x(8+16)"] = logits
    got = al.compare(demo_dump, changed)
    assert got["fp32"]["max_abs"] == 0.0 and got["int4"]["max_abs"] == 0.0
    assert got["int8"]["max_abs"] == pytest.approx(100.0)
    assert got["int8"]["top1_agree"] == rows - 1
    assert got["int8"]["worst_case"] == "stream 4x(8+16)"
    assert got["int8"]["cases"]["stream 4x(8+16)"] == pytest.approx(100.0)
    assert got["int8"]["cases"]["stream 1x(8+16)"] == 0.0
    table = al.case_table({"t6-demo.mof": {"native": "x86", "onnxruntime": "1.32.0", "cortex-a72": got}})
    int8 = next(row for row in table if row.startswith("| int8 | cortex-a72 |")).split(" | ")
    assert int8[2 + list(got["int8"]["cases"]).index("stream 4x(8+16)")] == "1e+02"
    line = al.markdown_rows("t6-demo.mof", "aarch64, qemu cortex-a72", {"int8": got["int8"]})[0]
    assert line.startswith("| t6-demo.mof | int8 | aarch64, qemu cortex-a72 | 1e+02 |") and f"{rows - 1}/{rows}" in line


def test_compare_refuses_different_shapes(al, demo_dump):
    other = {**demo_dump, "fp32/exact 4x8": demo_dump["fp32/exact 4x8"][:2]}
    with pytest.raises(ValueError, match="fp32/exact 4x8: shapes"):
        al.compare(demo_dump, other)


@pytest.mark.parametrize("argv, message", [
    (["nowhere.mof"], "nowhere.mof is not a mof bundle (no manifest.json)"),
    (["{demo}", "--dump", "{tmp}/missing"], "--dump: {tmp}/missing is not a folder"),
    (["{demo}", "--dump", "{tmp}", "--cpu", "cortex-a72"], "--dump computes this machine's logits only"),
    (["{demo}", "--md", "{tmp}/no/such/table.md"], "folder {tmp}/no/such does not exist"),
    (["{demo}", "--keep", "{tmp}/missing"], "--keep: {tmp}/missing is not a folder"),
])
def test_command_line_mistakes_are_one_line(al, demo_bundle, tmp_path, capsys, argv, message):
    fill = {"demo": str(demo_bundle), "tmp": str(tmp_path)}
    assert al.main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("arm64_logits.py: ") and err.count("\n") == 1
    assert message.format(**fill) in err


def test_emulated_runs_need_root(al, demo_bundle, capsys, monkeypatch):
    monkeypatch.setattr(al.os, "geteuid", lambda: 1000)
    assert al.main([str(demo_bundle)]) == 2
    assert "the emulated runs need root" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown argument: --bogus"),
    (["--cpu"], "--cpu needs a model name"),
    (["--bind", "/no/such/folder"], "--bind needs an existing folder"),
    (["--exec", "--"], "--exec needs a command"),
])
def test_ci_arm64_argument_errors(args, message):
    got = subprocess.run(["bash", str(ROOT / ".ci" / "arm64"), *args], capture_output=True, text=True, timeout=30)
    assert got.returncode != 0 and f".ci/arm64: {message}" in got.stderr


def test_ci_run_runs_the_arm64_suite_before_the_full_suite():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ".ci/arm64" in ci and ci.index(".ci/arm64") < ci.index("# 2. Everything, with the [export,dev] extras.")
