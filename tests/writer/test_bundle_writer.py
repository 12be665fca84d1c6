"""Bundles are written atomically: a failure leaves the old bundle or nothing; the manifest records what it is given."""

import os

import pytest

from mof.runtime.bundle import verify_bundle
from mof.writer.bundle_writer import BundleWriter
from mof.runtime.contract import FORMAT, FORMAT_VERSION, MANIFEST_FILE
from mof.runtime.errors import BundleError, MofError


def _manifest(**extra):
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "graphs": {}, **extra}


def _write(target, content=b"abc", force=False, **extra):
    with BundleWriter(target, force=force) as w:
        w.path("a.onnx").write_bytes(content)
        return w.commit(_manifest(**extra))


def _litter(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_commit_writes_hashes_and_verifies(tmp_path):
    out = _write(tmp_path / "b")
    m = verify_bundle(out)
    assert m["files"]["a.onnx"]["bytes"] == 3
    assert len(m["files"]["a.onnx"]["sha256"]) == 64
    assert MANIFEST_FILE not in m["files"]
    assert _litter(tmp_path) == []


def test_failure_mid_write_leaves_nothing(tmp_path):
    target = tmp_path / "b"
    with pytest.raises(RuntimeError):
        with BundleWriter(target) as w:
            w.path("a.onnx").write_bytes(b"x" * 1000)
            raise RuntimeError("disk died")
    assert not target.exists()
    assert _litter(tmp_path) == []


def test_existing_target_needs_force_and_failed_replace_keeps_old(tmp_path):
    target = _write(tmp_path / "b", b"old")
    with pytest.raises(MofError, match="--force"):
        _write(target, b"new")
    with pytest.raises(RuntimeError):
        with BundleWriter(target, force=True) as w:
            w.path("a.onnx").write_bytes(b"new")
            raise RuntimeError("interrupted")
    assert (target / "a.onnx").read_bytes() == b"old"
    _write(target, b"new", force=True)
    assert (target / "a.onnx").read_bytes() == b"new"
    verify_bundle(target)
    assert _litter(tmp_path) == []


def test_force_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(MofError, match="not a mof bundle"):
        _write(precious, force=True)
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_bundle_dir_is_not_private(tmp_path):
    out = _write(tmp_path / "b")
    assert os.stat(out).st_mode & 0o055   # readable by others per umask, unlike mkdtemp's 0700


def test_read_only_output_folder(tmp_path, monkeypatch):
    # root ignores permission bits, so ask the same question the writer asks
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(MofError, match="is not writable"):
        _write(tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_the_manifest_records_the_form_and_the_accessor_reads_it(tmp_path):
    from mof.export.cli import build_parser
    from mof.runtime.manifest import Manifest
    from mof.writer.manifest import make_manifest
    from mof.runtime.config import ModelConfig
    cfg = ModelConfig(60, 16, 24, 8, 2, 2, 4, 32, 64, 6, 12)
    made = lambda **kw: make_manifest(cfg, model_type=None, vocab={}, validation={}, producer={},
                                      source={}, **kw)
    assert made()["form"] == "chat" and made(form="raw")["form"] == "raw"
    with pytest.raises(BundleError, match="form must be one of"):
        made(form="poem")
    m = Manifest(made(form="raw", graphs=("step", "chunk")), where="x.mof")
    assert (m.form, m.config) == ("raw", cfg)
    with pytest.raises(BundleError, match="x.mof: manifest recommended_mode None is not one of stream, exact"):
        m.recommended_mode                                           # set_stream_report's, not yet made
    assert m.graph_file("step", "fp32") == "step.onnx" and m.graph_file("step", "int8") is None
    assert m.has_precision("fp32") and not m.has_precision("int8")
    with pytest.raises(BundleError, match="x.mof: bundle has no 'nonexistent' graph"):
        m.graph("nonexistent")
    assert build_parser().parse_args(["ckpt"]).form == "chat"          # mof-export's default
    assert build_parser().parse_args(["ckpt", "--form", "raw"]).form == "raw"
