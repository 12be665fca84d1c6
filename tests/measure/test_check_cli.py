"""mof-check: one ✓/✗ line per precision (and per probe), exit 0 only when every precision checked
reproduces the bundle's references; --record adds references to an older bundle, nothing else."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mof.measure.check_cli import main
from mof.runtime import DEFAULT_BUNDLE
from mof.runtime.bundle import file_record
from mof.runtime.model import check_environment
from mof.runtime.errors import MofError
from mof.runtime.selfcheck import SECTION


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _runs_int4() -> bool:
    try:
        check_environment(DEFAULT_BUNDLE, "int4")
        return True
    except MofError:
        return False


@pytest.fixture
def bundle(tmp_path):
    b = tmp_path / "demo.mof"
    shutil.copytree(DEFAULT_BUNDLE, b)
    return b


def _edit_manifest(bundle, change):
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")


def test_the_demo_passes_with_a_line_per_precision_and_probe(capsys, tmp_path):
    report = tmp_path / "check.json"
    code, out, err = _run(capsys, "--precision", "fp32", "--precision", "int8", "--json", report)
    print(out)
    assert code == 0, out + err
    assert out.startswith("mof-check: t6-demo.mof on ") and "onnxruntime" in out.splitlines()[0]
    assert [line[:7] for line in out.splitlines() if line[:4] in ("fp32", "int8")] == ["fp32  ✓", "int8  ✓"]
    assert out.count("      ✓ window 4x64") == 2 and "int4" not in out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["passed"] and [p["precision"] for p in data["precisions"]] == ["fp32", "int8"]
    assert all(p["max_abs_diff"] <= p["atol"] for p in data["precisions"])


def test_every_precision_by_default(capsys):
    code, out, _ = _run(capsys, "-q")
    verdicts = [line.split()[0] for line in out.splitlines()[1:-1]]
    assert verdicts == ["fp32", "int8", "int4"]
    assert code == (0 if _runs_int4() else 1)      # int4 needs onnxruntime >= 1.29: a ✗ line, not a crash


def test_a_changed_weight_fails_with_exit_1(capsys, bundle):
    data = bytearray((bundle / "weights.int8.bin").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4096] = (np.frombuffer(bytes(data[mid:mid + 4096]), np.int8) // 2).astype(np.int8).tobytes()
    (bundle / "weights.int8.bin").write_bytes(bytes(data))
    _edit_manifest(bundle, lambda m: m["files"].__setitem__("weights.int8.bin", file_record(bundle / "weights.int8.bin")))
    code, out, _ = _run(capsys, bundle, "--precision", "int8")
    print(out)
    assert code == 1
    assert "int8  ✗ max |Δlogit|" in out and "int8 did not reproduce the bundle's references" in out


def test_an_old_bundle_is_told_how_and_record_adds_only_references(capsys, bundle):
    _edit_manifest(bundle, lambda m: m.pop(SECTION))
    code, _, err = _run(capsys, bundle)
    assert code == 1 and err.count("\n") == 1
    assert f"records no reference logits (made before mof's self-check); add them on the machine that " \
           f"exported it: mof-check --record {bundle}" in err
    before = {p.name: file_record(p) for p in bundle.iterdir() if p.name != "manifest.json"}
    code, _, err = _run(capsys, bundle, "--record", "--precision", "fp32")
    assert code == 0, err
    assert {p.name: file_record(p) for p in bundle.iterdir() if p.name != "manifest.json"} == before
    code, out, _ = _run(capsys, bundle, "-q")
    assert code == 1 and "fp32  ✓" in out and "int8  ✗" in out and "mof-check --record" in out
    code, _, err = _run(capsys, bundle, "--record")                         # adds the missing ones only
    assert code == 0 and "references for fp32, int4, int8" in err
    code, _, err = _run(capsys, bundle, "--record")
    assert code == 1 and "already records references for fp32, int4, int8 (use --force" in err
    assert _run(capsys, bundle, "--record", "--force")[0] == 0
    assert _run(capsys, bundle, "--precision", "fp32")[0] == 0


@pytest.mark.parametrize("args, message", [
    (["--force"], "--force goes with --record"),
    (["--json", "."], "is a directory"),
])
def test_flag_mistakes_are_one_line_errors(capsys, args, message):
    code, _, err = _run(capsys, *args)
    assert code == 1 and message in err and err.count("\n") == 1


def test_a_precision_the_bundle_lacks(capsys, bundle):
    _edit_manifest(bundle, lambda m: [g.pop("int4", None) for g in m["graphs"].values()])
    code, _, err = _run(capsys, bundle, "--precision", "int4")
    assert code == 1 and "has no int4 graphs (it has fp32, int8)" in err
