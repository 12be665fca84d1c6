"""mof beside another onnxruntime (docs/embedding.md): the range in pyproject, the demo's logits
against the ones recorded in tests/fixtures (.ci/run runs this file under the lowest and the highest
supported onnxruntime, each in its own environment), the per-precision check of Model.load, and
execution providers."""

import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mof.runtime import DEFAULT_BUNDLE, Model, MofError
from mof.runtime.bundle import read_manifest
from mof.measure.machine import cpu_features
from mof.runtime.errors import OnnxruntimeWarning
from mof.runtime.ort_compat import CPU, KERNELS, SUPPORTED, check, model_of, precision_record, record, version
from mof.runtime.providers import Providers, canonical, parse, resolve

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ort_logits", Path(__file__).with_name("ort_logits.py"))
ort_logits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ort_logits)


# The range ---------------------------------------------------------------------------------------
def test_pyproject_range_is_the_supported_one_and_ci_tests_both_ends():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.startswith("onnxruntime")]   # the app's choice
    lo, hi = SUPPORTED
    extras = project["optional-dependencies"]
    assert extras["cpu"] == [f"onnxruntime>={lo},<={hi}"]
    for flavour in ("gpu", "directml", "openvino"):
        assert extras[flavour][0].startswith(f"onnxruntime-{flavour}>={lo},<={hi}")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"for ort_version in {lo} {hi}; do" in ci and "\"onnxruntime==$ort_version\"" in ci


def test_this_onnxruntime_is_in_the_supported_range():
    assert version(SUPPORTED[0]) <= version(ort.__version__) <= version(SUPPORTED[1]), ort.__version__


# Recorded logits ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded():
    return dict(np.load(ort_logits.FIXTURE, allow_pickle=False))


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_demo_logits_match_the_recorded_ones_or_load_refuses(recorded, precision):
    files = sorted(f"{f}:{h}" for f, h in ort_logits.bundle_files(DEFAULT_BUNDLE, precision).items())
    assert list(recorded[f"{precision}.files"]) == files, (
        "the demo bundle changed since its logits were recorded: rerun "
        "`python tests/runtime/ort_logits.py --record` under onnxruntime " + SUPPORTED[1])
    manifest = read_manifest(DEFAULT_BUNDLE)
    rec = manifest.onnxruntime_record(precision)
    need = rec.get("requires")
    if need and version(ort.__version__) < version(need):
        with pytest.raises(MofError, match=rf"need onnxruntime >= {need}.*this is onnxruntime {ort.__version__}"):
            Model.load(DEFAULT_BUNDLE, precision=precision)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OnnxruntimeWarning)
        logits = ort_logits.exact_logits(precision)
    top, values, lse = recorded[f"{precision}.top"], recorded[f"{precision}.values"], recorded[f"{precision}.logsumexp"]
    got = np.take_along_axis(logits, top, 1)
    diff = float(np.abs(got - values).max())
    _, _, got_lse = ort_logits.compact(logits)
    lse_diff = float(np.abs(got_lse - lse).max())
    print(f"{precision} on onnxruntime {ort.__version__} vs {recorded['onnxruntime']}: max |Δ| {diff:.2g} "
          f"over the top {ort_logits.TOP}, logsumexp {lse_diff:.2g}")
    assert (logits.argmax(1) == top[:, 0]).all()           # every position's top-1 is the recorded one
    # int4's MatMulNBits kernels differ between CPU kinds (AVX2, AVX-512 VNNI; docs/quantization.md):
    # its recorded logits are reproduced only on a CPU with the recording's features
    cpu_dependent = bool(manifest.get(precision, {}).get("quantization", {}).get("cpu_dependent"))
    same_cpu = list(recorded["cpu_flags"]) == cpu_features()["flags"]
    if cpu_dependent and not same_cpu:                     # measured 0.093 (qemu AVX2), 0.10 (native AVX2)
        assert diff <= 0.15 and lse_diff <= 0.15
    elif version(ort.__version__) in {version(v) for v in rec["reproduces"]}:
        assert diff <= 1e-4 and lse_diff <= 1e-4           # the export's tolerance
    else:                                                  # loads with a warning: measured 0.025 (int8)
        assert diff <= 0.1 and lse_diff <= 0.1


# The check ---------------------------------------------------------------------------------------
def _manifest(**over):
    m = read_manifest(DEFAULT_BUNDLE)
    m.update(over)
    return m


def test_int4_is_refused_below_the_version_its_kernels_need_in_one_line():
    with pytest.raises(MofError) as e:
        check(_manifest(), "int4", "t6-demo.mof", running="1.24.4")
    msg = str(e.value)
    assert "\n" not in msg and "onnxruntime >= 1.29.0" in msg and "1.24.4" in msg


def test_outside_the_known_versions_a_one_line_warning_names_onnxruntime():
    note = check(_manifest(), "int8", "t6-demo.mof", running="1.19.2")          # never measured
    assert note and "\n" not in note and "onnxruntime 1.19.2" in note and "1.32.0" in note
    assert "its logits may differ" in note and "mof-check t6-demo.mof" in note
    assert check(_manifest(), "int8", "t6-demo.mof", running="1.31.1") is None
    assert check(_manifest(), "fp32", "t6-demo.mof", running=SUPPORTED[0]) is None
    assert check(_manifest(), "int4", "t6-demo.mof", running="1.29.0")        # loads, not reproduced
    assert "CPU provider" in check(_manifest(), "fp32", "x", providers=("OpenVINOExecutionProvider", CPU),
                                   running=SUPPORTED[1])


def test_a_bundle_s_own_record_wins_over_what_mof_measured_of_its_scheme():
    own = {"int8": {"measured": "1.30.0", "reproduces": ["1.30.0"], "requires": "1.30.0", "basis": "its own"}}
    with pytest.raises(MofError, match="need onnxruntime >= 1.30.0"):
        check(_manifest(onnxruntime=own), "int8", "b", running="1.26.0")
    assert check(_manifest(onnxruntime=own), "int8", "b", running="1.32.0")   # not in its list: a warning
    bare = _manifest()
    for key in ("int4", "accuracy", "onnxruntime"):
        bare.pop(key, None)
    assert check(bare, "int4", "b", running="1.0.0") is None                    # nothing recorded: no claim


FULL_SIZE = {"vocab_size": 16000, "embed_dim": 512, "rnn_units": 1400, "router_units": 128, "rnn_layers": 1,
             "trans_layers": 23, "num_heads": 8, "ffn_dim": 512, "max_positions": 4096, "trans_window": 200,
             "window": 128, "family": "t6", "trans_layers_2": 0, "ffn_dim_2": 0, "embed_gru": True}


def test_the_lists_are_the_bundle_s_own_shapes_or_say_they_are_inferred():
    """int8 reproduces on every version measured at the demo's shapes, but at full size only from
    1.30 (docs/platforms.md): a full-size bundle's list is its own shapes', an older record (written
    from the demo's list) is judged again on them, and shapes never measured get what held on every
    model measured, marked as inferred."""
    full = _manifest(model={"model_type": "t6_beta_dense", **FULL_SIZE})
    full["onnxruntime"] = {"int8": {"measured": "1.32.0", "reproduces": ["1.20.1", "1.24.4", "1.32.0"]}}
    rec = precision_record(full, "int8")
    assert rec["reproduces"] == ["1.30.0", "1.31.1", "1.32.0"] and "t6_beta_dense" in rec["basis"]
    note = check(full, "int8", "big.mof", running="1.24.4")
    assert note and "measured to differ on this model's shapes" in note and "mof-check big.mof" in note
    assert check(full, "fp32", "big.mof", running="1.24.4") is None
    assert check(_manifest(), "int8", "t6-demo.mof", running="1.24.4") is None    # the demo's shapes
    other = _manifest(model={**FULL_SIZE, "embed_dim": 520, "rnn_units": 392})
    rec = record("int8", "rowwise-u8s8", "1.32.0", config=other["model"])
    assert rec["reproduces"] == ["1.30.0", "1.31.1", "1.32.0"] and rec["basis"].startswith("inferred")
    assert model_of(read_manifest(DEFAULT_BUNDLE).config) == "demo"


def test_the_writer_records_this_onnxruntime_and_what_reproduces_it():
    r = record("int4", "matmulnbits-int4", measured="1.32.0", config=read_manifest(DEFAULT_BUNDLE).config)
    assert r == {"measured": "1.32.0", "reproduces": list(KERNELS["matmulnbits-int4"].same["demo"]),
                 "basis": "measured on this model's shapes (demo)",
                 "requires": "1.29.0", "why": KERNELS["matmulnbits-int4"].why}
    assert record("int8", "some-new-scheme", measured="1.31.0") == {
        "measured": "1.31.0", "reproduces": ["1.31.0"], "basis": "the version it was measured with"}
    assert record("fp32")["measured"] == ort.__version__


def test_make_manifest_records_the_fp32_onnxruntime():
    from mof.writer.manifest import make_manifest
    m = make_manifest(read_manifest(DEFAULT_BUNDLE).config, model_type=None, vocab={}, validation={},
                      producer={}, source={})
    assert m["onnxruntime"]["fp32"]["measured"] == ort.__version__


def test_mof_run_warns_in_one_line_and_refuses_in_one_line(tmp_path):
    bundle = tmp_path / "b.mof"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))

    def run(section):
        m["onnxruntime"] = section
        (bundle / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
        return subprocess.run([sys.executable, "-m", "mof.runtime.cli", "--model", str(bundle), "--int8",
                               "--prompt", "你好", "--max-tokens", "3", "--seed", "0"],
                              capture_output=True, text=True, timeout=120)
    p = run({"int8": {"measured": "9.0.0", "reproduces": ["9.0.0"]}})
    assert p.returncode == 0, p.stderr
    warn = [line for line in p.stderr.splitlines() if "warning" in line]
    assert len(warn) == 1 and warn[0].startswith("mof-run: warning: b.mof: int8") and "9.0.0" in warn[0]
    p = run({"int8": {"measured": "9.0.0", "reproduces": ["9.0.0"], "requires": "9.0.0"}})
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "need onnxruntime >= 9.0.0" in p.stderr


def test_without_onnxruntime_the_message_says_what_to_install():
    block = "import sys; sys.modules['onnxruntime'] = None; "
    p = subprocess.run([sys.executable, "-c", block + "import mof.runtime"], capture_output=True, text=True)
    assert p.returncode == 1 and "pip install 'mof[cpu]'" in p.stderr.splitlines()[-1]
    p = subprocess.run([sys.executable, "-c", block + "sys.argv = ['mof-run']; import mof.runtime.cli"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.startswith("mof-run: error: mof needs onnxruntime")
    assert p.stderr.count("\n") == 1


# Execution providers -----------------------------------------------------------------------------
def test_provider_names_and_options():
    assert canonical("openvino") == canonical("OpenVINO") == "OpenVINOExecutionProvider"
    assert canonical("dml") == canonical("DirectML") == "DmlExecutionProvider"
    assert canonical("CPUExecutionProvider") == CPU
    assert parse("openvino:device_type=GPU,precision=FP16") == (
        "OpenVINOExecutionProvider", {"device_type": "GPU", "precision": "FP16"})
    with pytest.raises(MofError, match="key=value"):
        parse("openvino:GPU")
    assert resolve(None).names == (CPU,) and resolve("cpu").names == (CPU,)


def test_model_runs_on_the_cpu_provider_by_default_and_when_asked():
    assert Model.load(DEFAULT_BUNDLE).providers == [CPU]
    model = Model.load(DEFAULT_BUNDLE, providers="cpu")
    assert model.providers == [CPU] and set(model.sessions) == {"decode"}


def test_a_provider_that_must_not_run_ifs_gets_the_step_and_chunk_graphs():
    m = read_manifest(DEFAULT_BUNDLE)
    assert Providers((CPU,), ({},)).runs_branches
    assert not Providers(("OpenVINOExecutionProvider", CPU), ({}, {})).runs_branches
    for precision in ("fp32", "int8", "int4"):
        assert m.decoding_graphs(precision) == ("decode",)
        assert m.decoding_graphs(precision, branches=False) == ("step", "chunk")
    # the graphs on their own compute what the decode graph does
    ids = np.arange(3, 60)
    a, b = Model.load(DEFAULT_BUNDLE), Model.load(DEFAULT_BUNDLE, graphs=("step", "chunk"))
    assert np.abs(a.exact_logits(ids) - b.exact_logits(ids)).max() <= 1e-5


def test_a_provider_this_onnxruntime_lacks_is_one_line_naming_it():
    missing = "CoreMLExecutionProvider"
    assert missing not in ort.get_available_providers()
    with pytest.raises(MofError) as e:
        Model.load(DEFAULT_BUNDLE, providers="coreml")
    msg = str(e.value)
    assert "\n" not in msg and missing in msg and ort.__version__ in msg and "CPU" in msg


def test_mof_run_provider_flag():
    base = [sys.executable, "-m", "mof.runtime.cli", "--prompt", "你好", "--max-tokens", "3", "--seed", "0"]
    ok = subprocess.run(base + ["--provider", "cpu"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip(), ok.stderr
    bad = subprocess.run(base + ["--provider", "coreml"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("mof-run: error: onnxruntime")
    assert "CoreMLExecutionProvider" in bad.stderr
