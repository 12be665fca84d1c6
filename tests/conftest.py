"""Shared fixtures. TF-backed tests carry the ``tf`` marker: ``pytest -m "not tf"`` runs the rest with
the runtime and the [test] extra alone (no TensorFlow, no onnx), on the demo bundle shipped in the
package. Tiny checkpoints for the ``tf`` tests are built here with xiaothink's own code — nothing is
downloaded."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

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


@pytest.fixture(scope="session")
def ckpt_factory(tmp_path_factory):
    """make(config, seed=0, vocab=None) -> checkpoint prefix; identical requests are built once."""
    from mof.export.synthetic import make_checkpoint
    cache: dict = {}

    def make(config, seed: int = 0, vocab=None) -> Path:
        key = (config, seed, None if vocab is None else tuple(vocab))
        if key not in cache:
            folder = tmp_path_factory.mktemp("ckpt")
            cache[key] = make_checkpoint(folder, config, seed=seed, vocab=vocab)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_ckpt(ckpt_factory) -> Path:
    """A tiny random-weight T6 checkpoint (n=2, L=2, Wt=6, W=12) with vocab.txt beside it."""
    from mof.export.synthetic import tiny_config
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
    """The tiny checkpoint exported once (full, window and step graphs)."""
    return _export_tiny(tiny_ckpt, tmp_path_factory.mktemp("bundle") / "tiny.mof")


def _export_tiny(ckpt: Path, out: Path, **options) -> Path:
    """mof-export's pipeline on a tiny checkpoint (H = 4, Wt = 6, W = 12, 40 tokens measured)."""
    from mof.export.pipeline import ExportOptions, export_checkpoint
    from mof.export.progress import Progress
    opts = ExportOptions(checkpoint=ckpt, output=out, num_heads=4, trans_window=6, window=12,
                         eval_tokens=40, **options)
    return export_checkpoint(opts, Progress(6 + opts.int8, quiet=True))


def _reference_model(config, prefix: Path):
    """xiaothink's own Keras model for ``config``, restored from ``prefix``."""
    from mof.export.checkpoint import list_variables
    from mof.export.keras_model import build_keras_model, restore
    model = build_keras_model(config)
    restore(model, prefix, list_variables(prefix))
    return model


@pytest.fixture(scope="session")
def tiny_tf_model(tiny_ckpt):
    """xiaothink's own Keras model restored from the tiny checkpoint (the reference)."""
    from mof.export.synthetic import tiny_config
    return _reference_model(tiny_config(), tiny_ckpt)


@pytest.fixture(scope="session")
def tiny_t7_ckpt(ckpt_factory) -> Path:
    """A tiny random-weight T7 checkpoint (n=2, L=2 + L2=3, Wt=6, W=12) with vocab.txt beside it."""
    from mof.export.synthetic import tiny_t7_config
    return ckpt_factory(tiny_t7_config(), seed=7)


@pytest.fixture(scope="session")
def tiny_t7_bundle(tiny_t7_ckpt, tmp_path_factory) -> Path:
    """The tiny T7 checkpoint exported once, with int8 graphs (kept even if they miss the gates:
    random weights; the gates are tested on a trained T7 in tests/quant)."""
    return _export_tiny(tiny_t7_ckpt, tmp_path_factory.mktemp("bundle") / "tiny-t7.mof", int8=True,
                        allow_degraded=True)


@pytest.fixture(scope="session")
def tiny_t7_tf_model(tiny_t7_ckpt):
    """xiaothink's own T7 Keras model (MoEModel_t7) restored from the tiny T7 checkpoint."""
    from mof.export.synthetic import tiny_t7_config
    return _reference_model(tiny_t7_config(), tiny_t7_ckpt)
