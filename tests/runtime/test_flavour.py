"""mof beside an onnxruntime flavour the app chose: .ci/run installs onnxruntime-openvino (its own
distribution, the OpenVINO provider built in) in a fresh environment, then mof with
`pip install -e ".[test]"`, and runs this file there with MOF_FLAVOUR=onnxruntime-openvino. Elsewhere
(no OpenVINO provider) it is skipped with the reason; with MOF_FLAVOUR set it cannot be skipped."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mof.runtime import DEFAULT_BUNDLE, Model, MofError

OPENVINO = "OpenVINOExecutionProvider"
FLAVOUR = os.environ.get("MOF_FLAVOUR")
if not FLAVOUR and OPENVINO not in ort.get_available_providers():
    pytest.skip("needs onnxruntime-openvino (CI's flavour environment: MOF_FLAVOUR=onnxruntime-openvino)",
                allow_module_level=True)


def _distributions() -> set:
    return {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}


def test_installing_mof_kept_the_flavour_and_brought_no_cpu_package():
    have = _distributions()
    assert (FLAVOUR or "onnxruntime-openvino") in have
    assert "onnxruntime" not in have          # the CPU package would overwrite the flavour's files
    assert OPENVINO in ort.get_available_providers()


def test_fp32_runs_on_openvino_with_the_recorded_logits():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("ort_logits", Path(__file__).with_name("ort_logits.py"))
    ort_logits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ort_logits)
    with pytest.warns(UserWarning, match="this runs OpenVINOExecutionProvider"):
        model = Model.load(DEFAULT_BUNDLE, providers="openvino")
    assert model.providers[0] == OPENVINO
    assert set(model.sessions) == {"step", "chunk"}      # no decode graph: its Ifs (providers.NO_BRANCHES)
    logits = ort_logits.exact_logits("fp32", providers="openvino", check_onnxruntime=False)
    rec = np.load(ort_logits.FIXTURE, allow_pickle=False)
    diff = float(np.abs(np.take_along_axis(logits, rec["fp32.top"], 1) - rec["fp32.values"]).max())
    print(f"fp32 on OpenVINO ({ort.__version__}) vs CPU ({rec['onnxruntime']}): max |Δ| {diff:.2g}")
    assert diff <= 1e-4 and (logits.argmax(1) == rec["fp32.top"][:, 0]).all()


def test_stream_decoding_on_openvino_matches_the_cpu_provider():
    """Refills (the chunk graph at a new length each time) and steps, token by token: the
    OpenVINO provider's logits against the CPU provider's in this same onnxruntime. (On the decode
    graph, OpenVINO 2025.4 gave NaN now and then after a refill.)"""
    from mof.runtime.decoder import make_decoder
    text = (Path(__file__).resolve().parents[1] / "fixtures" / "demo_ckpt" / "heldout.txt").read_text(encoding="utf-8")
    runs = {}
    for provider in ("openvino", "cpu"):
        model = Model.load(DEFAULT_BUNDLE, providers=provider, check_onnxruntime=False)
        ids = model.vocab.encode(text[:120])
        for R in (16, 5):                    # two refill periods: refills of K = 49 and 60 tokens
            dec = make_decoder(model, "stream", refill_every=R)
            runs[provider, R] = np.stack([dec.feed([i]) for i in ids])
    for R in (16, 5):
        diff = float(np.abs(runs["openvino", R] - runs["cpu", R]).max())
        print(f"stream R={R}, {len(runs['cpu', R])} tokens: OpenVINO vs CPU max |Δ| {diff:.2g}")
        assert np.isfinite(runs["openvino", R]).all() and diff <= 1e-4


def test_int8_graphs_do_not_load_on_openvino_in_one_line():
    with pytest.raises(MofError) as e:
        Model.load(DEFAULT_BUNDLE, precision="int8", providers="openvino", check_onnxruntime=False)
    assert "\n" not in str(e.value) and "on OpenVINOExecutionProvider" in str(e.value)


def test_mof_run_provider_openvino():
    p = subprocess.run([sys.executable, "-m", "mof.runtime.cli", "--provider", "openvino", "--prompt", "你好",
                        "--max-tokens", "5", "--seed", "0"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    assert "warning" in p.stderr and OPENVINO in p.stderr
