"""Shared fixtures. TF-backed tests carry the ``tf`` marker: ``pytest -m "not tf"`` runs the rest with
the runtime and the [test] extra alone (no TensorFlow, no onnx), on the demo bundle shipped in the
package. Tiny checkpoints for the ``tf`` tests are built here with xiaothink's own code — nothing is
downloaded.

The suite runs in parallel (pytest-xdist, pyproject's addopts: one worker per core, at most 4, a
file per worker): a checkpoint or bundle several workers need is made once per run, by the first
worker that asks (``once``), and read by the others."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import pytest

HAVE_TF = all(importlib.util.find_spec(m) is not None
              for m in ("tensorflow", "tf_keras", "tf2onnx", "xiaothink"))


def pytest_collection_modifyitems(config, items):
    # Outside CI, a runtime-only install skips the TF tests with a reason; in CI they must run.
    if HAVE_TF or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="needs the [export] extra (pip install -e '.[export,dev]')")
    for item in items:
        if "tf" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_bundle() -> Path:
    """The demo bundle shipped in the package (fp32 and int8 graphs): a real bundle without TensorFlow."""
    from mof.runtime import DEFAULT_BUNDLE
    return DEFAULT_BUNDLE


@pytest.fixture(scope="session")
def fp32_bundle(tmp_path_factory) -> Path:
    """A copy of the demo bundle without its int8 graphs (what mof-export writes without --int8)."""
    import json
    import shutil
    from mof.runtime import DEFAULT_BUNDLE
    out = tmp_path_factory.mktemp("fp32") / "demo-fp32.mof"
    shutil.copytree(DEFAULT_BUNDLE, out)
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for graph in m["graphs"].values():
        name = graph.pop("int8", None)
        if name:
            del m["files"][name]
            (out / name).unlink()
    m.pop("int8", None)                               # the int8 record
    m.get("onnxruntime", {}).pop("int8", None)
    int8_weights = m.get("weights", {}).pop("int8", None)
    if int8_weights:
        del m["files"][int8_weights]
        (out / int8_weights).unlink()
    (out / "manifest.json").write_text(json.dumps(m, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)             # released when the file closes
        yield


def once(tmp_path_factory, name: str, make: Callable[[Path], Path]) -> Path:
    """``make(folder)`` once per test run, in the run's own temporary directory: under pytest-xdist
    every worker asks, the first makes it while the others wait, then all read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):     # .../pytest-N/popen-gwK: share .../pytest-N
        root = root.parent
    shared = root / "shared"
    shared.mkdir(exist_ok=True)
    folder, done = shared / name, shared / f"{name}.done"
    with _locked(shared / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(str(make(folder).relative_to(folder)))
        return folder / done.read_text()


@pytest.fixture(scope="session")
def ckpt_factory(tmp_path_factory):
    """make(config, seed=0, vocab=None) -> checkpoint prefix; identical requests are built once."""
    from synthetic import make_checkpoint

    def make(config, seed: int = 0, vocab=None) -> Path:
        key = repr((config, seed, None if vocab is None else tuple(vocab)))
        return once(tmp_path_factory, "ckpt-" + hashlib.sha1(key.encode()).hexdigest()[:16],
                    lambda folder: make_checkpoint(folder, config, seed=seed, vocab=vocab))

    return make


@pytest.fixture(scope="session")
def tiny_ckpt(ckpt_factory) -> Path:
    """A tiny random-weight T6 checkpoint (n=2, L=2, Wt=6, W=12) with vocab.txt beside it."""
    from mof_testing import tiny_config
    return ckpt_factory(tiny_config())


@pytest.fixture
def run_cli():
    """run_cli(args) -> (returncode, stdout, stderr) of mof-export in a fresh interpreter."""
    import subprocess

    def run(args, cwd=None, timeout=300):
        proc = subprocess.run([sys.executable, "-c", "import sys; from mof.export.cli import main; "
                               "sys.exit(main())", *map(str, args)],
                              capture_output=True, text=True, cwd=cwd, timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr
    return run


@pytest.fixture(scope="session")
def tiny_bundle(tiny_ckpt, tmp_path_factory) -> Path:
    """The tiny checkpoint exported once: the graphs decoding runs and window.onnx (tf2onnx's GRUs,
    which tests/quant rewrites); full.onnx is checked where its shapes are (tests/export/test_parity.py)."""
    return once(tmp_path_factory, "tiny-bundle", lambda d: _export_tiny(tiny_ckpt, d / "tiny.mof", full=False))


def _export_tiny(ckpt: Path, out: Path, **options) -> Path:
    """mof-export's pipeline on a tiny checkpoint (H = 4, Wt = 6, W = 12, 40 tokens measured)."""
    from mof_testing import export_bundle
    return export_bundle(ckpt, out, num_heads=4, trans_window=6, window=12, eval_tokens=40, **options)


@pytest.fixture(scope="session")
def tiny_tf_model(tiny_ckpt):
    """xiaothink's own Keras model restored from the tiny checkpoint (the reference)."""
    from mof_testing import reference_model, tiny_config
    return reference_model(tiny_config(), tiny_ckpt)


@pytest.fixture(scope="session")
def tiny_t7_ckpt(ckpt_factory) -> Path:
    """A tiny random-weight T7 checkpoint (n=2, L=2 + L2=3, Wt=6, W=12) with vocab.txt beside it."""
    from mof_testing import tiny_t7_config
    return ckpt_factory(tiny_t7_config(), seed=7)


@pytest.fixture(scope="session")
def tiny_t7_bundle(tiny_t7_ckpt, tmp_path_factory) -> Path:
    """The tiny T7 checkpoint exported once, with int8 graphs (kept even if they miss the gates:
    random weights; the gates are tested on a trained T7 in tests/quant)."""
    return once(tmp_path_factory, "tiny-t7-bundle", lambda d: _export_tiny(
        tiny_t7_ckpt, d / "tiny-t7.mof", int8=True, allow_degraded=True))


@pytest.fixture(scope="session")
def tiny_t7_tf_model(tiny_t7_ckpt):
    """xiaothink's own T7 Keras model (MoEModel_t7) restored from the tiny T7 checkpoint."""
    from mof_testing import reference_model, tiny_t7_config
    return reference_model(tiny_t7_config(), tiny_t7_ckpt)
