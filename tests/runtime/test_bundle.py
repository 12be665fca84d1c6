"""Bundles are verified before use: format, version, every file's size and sha256, no path outside."""

import json

import pytest

from mof.runtime.bundle import read_manifest, verify_bundle
from mof.writer.bundle_writer import BundleWriter
from mof.runtime.contract import FORMAT, FORMAT_VERSION, MANIFEST_FILE
from mof.runtime.errors import BundleError


def _manifest(**extra):
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "graphs": {}, **extra}


def _write(target, content=b"abc", force=False, **extra):
    with BundleWriter(target, force=force) as w:
        w.path("a.onnx").write_bytes(content)
        return w.commit(_manifest(**extra))


@pytest.mark.parametrize("tamper, message", [
    (lambda d: (d / "a.onnx").write_bytes(b"abd"), "sha256"),
    (lambda d: (d / "a.onnx").write_bytes(b"abcd"), "bytes"),
    (lambda d: (d / "a.onnx").unlink(), "missing"),
])
def test_verify_detects_tampering(tmp_path, tamper, message):
    out = _write(tmp_path / "b")
    tamper(out)
    with pytest.raises(BundleError, match=message):
        verify_bundle(out)


@pytest.mark.parametrize("name", ["../a.onnx", "/etc/passwd", "sub/a.onnx", "..", "C:a"])
def test_verify_refuses_paths_outside_the_bundle(tmp_path, name):
    out = _write(tmp_path / "b")
    m = json.loads((out / MANIFEST_FILE).read_text())
    m["files"][name] = m["files"]["a.onnx"]
    (out / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(BundleError, match="unsafe"):
        verify_bundle(out)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "other"}), "not a mof-bundle"),
    (json.dumps({"format": FORMAT, "format_version": 99}), "format_version 99"),
    (json.dumps([1, 2]), "not a mof-bundle"),
])
def test_manifest_format_checks(tmp_path, content, message):
    (tmp_path / MANIFEST_FILE).write_text(content)
    with pytest.raises(BundleError, match=message):
        read_manifest(tmp_path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        read_manifest(tmp_path)
