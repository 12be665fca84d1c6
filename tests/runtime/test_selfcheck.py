"""A bundle checks itself: the reference logits recorded in the manifest are recomputed on this
machine (mof.runtime.selfcheck); a wrong kernel or weight is caught, an old bundle says how to add
references, and a CPU/onnxruntime pair known to compute some products wrong runs the check at load."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from mof.runtime import DEFAULT_BUNDLE, Model, MofError
from mof.runtime.bundle import file_record
from mof.runtime.contract import PRECISIONS
from mof.runtime.errors import BundleError
from mof.runtime.model import check_environment
from mof.runtime.selfcheck import SECTION, TOLERANCES, check_model, make_probes


def _runs(precision: str) -> bool:
    """This onnxruntime runs ``precision``'s graphs (int4 needs 1.29: runtime/ort_compat.py)."""
    try:
        check_environment(DEFAULT_BUNDLE, precision)
        return True
    except MofError:
        return False


def _copy(tmp_path: Path) -> Path:
    bundle = tmp_path / "demo.mof"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    return bundle


def _edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    m = json.loads(path.read_text(encoding="utf-8"))
    change(m)
    path.write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")


def _scale_weights(bundle: Path, precision: str, factor: float) -> None:
    """Scale a run of float32 weights in the middle of the precision's weights file (the manifest's
    hash follows, so the bundle still verifies: what changed is what it computes)."""
    name = f"weights.{precision}.bin"
    data = bytearray((bundle / name).read_bytes())
    mid = (len(data) // 2) & ~3
    block = np.frombuffer(bytes(data[mid:mid + 16384]), "<f4") * factor
    data[mid:mid + 16384] = block.astype("<f4").tobytes()
    (bundle / name).write_bytes(bytes(data))
    _edit_manifest(bundle, lambda m: m["files"].__setitem__(name, file_record(bundle / name)))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_demo_reproduces_its_references(precision):
    if not _runs(precision):
        pytest.skip(f"this onnxruntime does not run {precision}")
    model = Model.load(DEFAULT_BUNDLE, precision=precision)
    result = model.self_check()
    print(result.line())
    assert result.passed, result.line()
    assert result.rows == 12 and result.top1_agree == 12
    assert model.self_check_result is result
    # on the CPU kind the references were made on, every precision is held to 1e-4
    assert result.atol == (TOLERANCES[precision].same_kind if result.same_cpu_kind else TOLERANCES[precision].other_kind)


def test_the_probes_reach_every_path():
    config = Model.load(DEFAULT_BUNDLE).config
    probes = make_probes(config)
    calls = {(p.call, p.ids.shape[0]) for p in probes}
    assert {("exact", 1), ("exact", 4), ("prefill", 1), ("refill-step", 1), ("refill-step", 4)} <= calls
    assert any(p.call == "exact" and p.ids.shape[1] == config.window for p in probes)
    assert any(p.call == "exact" and p.ids.shape[1] < config.window for p in probes)


def test_a_changed_weight_is_caught(tmp_path):
    bundle = _copy(tmp_path)
    _scale_weights(bundle, "fp32", 1.5)
    with pytest.raises(MofError, match=r"self-check failed: fp32  ✗ max \|Δlogit\|"):
        Model.load(bundle, self_check=True)
    result = Model.load(bundle).self_check()          # not required: a verdict, no error
    print(result.line())
    assert not result.passed and result.max_abs_diff > 1e-3
    assert Model.load(bundle, precision="int8", self_check=True).self_check_result.passed   # its own weights


@pytest.mark.parametrize("shift, passes", [(1e-3, False), (1e-6, True)])
def test_a_kernel_that_computes_other_logits_is_caught(monkeypatch, shift, passes):
    model = Model.load(DEFAULT_BUNDLE)             # fp32: held to 1e-4 on every CPU kind (ARM64 too)
    run = Model._run

    def shifted(self, graph, feeds):       # a session whose kernels compute slightly other logits
        got = run(self, graph, feeds)
        got["logits"] = got["logits"] + np.float32(shift) * (np.arange(got["logits"].shape[-1]) % 3)
        return got
    monkeypatch.setattr(Model, "_run", shifted)
    result = model.self_check()
    print(result.line())
    assert result.passed is passes
    assert result.max_abs_diff == pytest.approx(2 * shift, abs=1e-5)    # unshifted: <= 7.6e-6 (1.20.1, ARM64)


def test_a_bundle_without_references_says_how_to_add_them(tmp_path):
    bundle = _copy(tmp_path)
    _edit_manifest(bundle, lambda m: m.pop(SECTION))
    model = Model.load(bundle)
    with pytest.raises(MofError, match=r"records no reference logits for fp32 .*mof-check --record "):
        model.self_check()
    with pytest.raises(MofError, match=r"mof-check --record"):
        Model.load(bundle, self_check=True)


@pytest.mark.parametrize("breakage", [
    lambda s: s["precisions"]["fp32"]["top_logits"].__setitem__("base64", "not base64!"),
    lambda s: s["precisions"]["fp32"]["mean"].__setitem__("shape", [5]),
    lambda s: s["probes"][0].__setitem__("call", "eval"),
    lambda s: s["probes"].pop(),
    lambda s: s["sample_ids"].append(10 ** 6),
    lambda s: s["precisions"]["fp32"].pop("atol"),
])
def test_a_malformed_section_is_a_one_line_bundle_error(tmp_path, breakage):
    bundle = _copy(tmp_path)
    _edit_manifest(bundle, lambda m: breakage(m[SECTION]))
    with pytest.raises(BundleError, match=SECTION) as e:
        Model.load(bundle).self_check()
    assert "\n" not in str(e.value)


def test_another_cpu_kind_gets_int4s_wider_tolerance(monkeypatch):
    import mof.runtime.selfcheck as selfcheck
    other = {"model": "Some ARM64 CPU", "machine": "aarch64", "flags": ["asimddp"]}
    monkeypatch.setattr(selfcheck, "cpu_features", lambda: other)
    for precision in filter(_runs, PRECISIONS):
        result = check_model(Model.load(DEFAULT_BUNDLE, precision=precision))
        assert not result.same_cpu_kind and result.atol == TOLERANCES[precision].other_kind
    assert TOLERANCES["int4"].other_kind > TOLERANCES["fp32"].other_kind


def test_what_makes_a_cpu_kind_depends_on_the_precision(monkeypatch):
    """int8's products are exact on every x86 CPU with AVX2 (AVX2 or VNNI kernels alike): an AVX2-only
    CPU is int8's kind but not int4's (its MatMulNBits kernels differ), and not fp32's concern."""
    import mof.runtime.selfcheck as selfcheck
    avx2 = {"model": "Some AVX2 laptop", "machine": "x86_64", "flags": ["sse4_1", "avx", "avx2", "fma"]}
    monkeypatch.setattr(selfcheck, "cpu_features", lambda: avx2)
    recorded = Model.load(DEFAULT_BUNDLE).manifest["self_check"]["precisions"]
    vnni = "avx512_vnni" in recorded["int8"]["measured_on"]["cpu"]["flags"]
    int8 = check_model(Model.load(DEFAULT_BUNDLE, precision="int8"))
    assert int8.same_cpu_kind and int8.atol == TOLERANCES["int8"].same_kind
    if _runs("int4"):
        int4 = check_model(Model.load(DEFAULT_BUNDLE, precision="int4"))
        assert int4.same_cpu_kind is not vnni


def test_a_known_product_bug_makes_load_check_the_bundle(tmp_path, monkeypatch):
    """On an AMX CPU under onnxruntime 1.21-1.24 (wrong u8 x s8 products for some widths), int8
    loads only after its self-check passes; fp32 and other versions load as before."""
    import mof.runtime.ort_compat as ort_compat
    monkeypatch.setattr(ort_compat, "current", lambda: "1.22.1")
    monkeypatch.setattr("mof.runtime.machine.cpu_flags", lambda: {"avx512_vnni", "amx_int8"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Model.load(DEFAULT_BUNDLE, precision="int8").self_check_result.passed
        assert Model.load(DEFAULT_BUNDLE).self_check_result is None
        bundle = _copy(tmp_path)
        _scale_weights(bundle, "int8", 1.5)
        with pytest.raises(MofError, match="self-check failed .*AMX.* onnxruntime 1.22.1"):
            Model.load(bundle, precision="int8")
        _edit_manifest(bundle, lambda m: m.pop(SECTION))
        with pytest.raises(MofError, match="records no reference logits for int8 .*AMX"):
            Model.load(bundle, precision="int8")
        monkeypatch.setattr(ort_compat, "current", lambda: "1.20.1")
        assert Model.load(bundle, precision="int8").self_check_result is None


def test_another_window_checks_the_bundles_own():
    model = Model.load(DEFAULT_BUNDLE, window=16)
    assert model.self_check().passed
