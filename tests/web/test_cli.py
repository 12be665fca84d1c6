"""mof-web BUNDLE -o DIR: the site it writes (the page, mof-serve's stylesheet, the package, onnxruntime-web's
files, the bundle's files for one precision, verified), and its refusals: one line, non-zero, nothing
written or replaced."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mof.runtime import DEFAULT_BUNDLE
from mof.web.cli import main

from .conftest import ROOT, needs_npm

pytestmark = needs_npm


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_site_holds_the_page_the_package_onnxruntime_web_and_the_bundles_files(site):
    assert {p.name for p in site.iterdir()} == {"index.html", "page.js", "page.css", "chat.css", "config.json",
                                                "fontcheck.js", "favicon.svg", "favicon.ico", "mof", "ort", "bundle"}
    for name in ("chat.css", "fontcheck.js", "favicon.svg", "favicon.ico"):           # mof-serve's, byte for byte
        assert (site / name).read_bytes() == (ROOT / "serve" / "static" / name).read_bytes()
    icons = re.findall(r'<link rel="icon" href="([^"]+)"', (site / "index.html").read_text(encoding="utf-8"))
    assert icons == ["favicon.svg"] and (site / icons[0]).is_file()     # relative: the site may live in a folder
    assert {p.name for p in (site / "mof").iterdir()} == {p.name for p in (ROOT / "js" / "src").glob("*.js")} - {"node.js"}
    assert {p.name for p in (site / "ort").iterdir()} >= {"ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs",
                                                          "ort-wasm-simd-threaded.wasm", "package.json"}
    config = json.loads((site / "config.json").read_text(encoding="utf-8"))
    assert config["bundle"] == "bundle/" and config["precision"] == "fp32" and config["model"] == "t6-demo.mof"
    manifest = json.loads((site / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    copied = sorted(p.name for p in (site / "bundle").iterdir())
    assert copied == ["decode.onnx", "manifest.json", "vocab.json", "weights.fp32.bin"]
    for name in (c for c in copied if c != "manifest.json"):
        assert _sha(site / "bundle" / name) == manifest["files"][name]["sha256"]


def test_int8_copies_the_int8_graph_and_weights(tmp_path, capsys):
    assert main([str(DEFAULT_BUNDLE), "-o", str(tmp_path / "s"), "--int8"]) == 0
    assert sorted(p.name for p in (tmp_path / "s" / "bundle").iterdir()) == [
        "decode.int8.onnx", "manifest.json", "vocab.json", "weights.int8.bin"]
    assert "python -m http.server -d" in capsys.readouterr().err


def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "site"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"mof-web: error: {out} exists and is not empty; pass --force to replace it"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    broken = tmp_path / "broken.mof"
    shutil.copytree(DEFAULT_BUNDLE, broken)
    data = bytearray((broken / "decode.onnx").read_bytes())
    data[100] ^= 0xFF
    (broken / "decode.onnx").write_bytes(bytes(data))
    assert main([str(broken), "-o", str(tmp_path / "b")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mof-web: error: {broken}: decode.onnx does not match its sha256 in the manifest")
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []      # no half-written site

    assert main(["-o", str(tmp_path / "c"), "--js", str(tmp_path)]) == 1
    assert "JavaScript package of the mof source tree" in capsys.readouterr().err
    js = tmp_path / "js"
    shutil.copytree(ROOT / "js" / "src", js / "src")
    assert main(["-o", str(tmp_path / "c"), "--js", str(js)]) == 1
    assert f"run  npm ci --prefix {js}" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_force_replaces_the_site(tmp_path, site):
    out = tmp_path / "site"
    shutil.copytree(site, out)
    (out / "old.txt").write_text("old")
    assert main(["-o", str(out), "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "index.html").is_file()


def test_the_console_script_has_help():
    proc = subprocess.run([sys.executable, "-m", "mof.web.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "require-corp" in proc.stdout and "--int8" in proc.stdout
