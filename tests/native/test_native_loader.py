"""mof.runtime.native never stands in the way: no compiler or a failed build is one line, and the
stock graphs run; a build is written whole or not at all."""

from __future__ import annotations

import shutil

import pytest

from mof.runtime import native


def test_no_compiler_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    monkeypatch.setenv("MOF_NATIVE_CACHE", str(tmp_path / "cache"))
    got = native.build()
    assert got.path is None and got.isa == ""
    assert "no C++ compiler" in got.note and "\n" not in got.note
    assert not (tmp_path / "cache").exists()


def test_a_failed_build_is_one_line_and_leaves_nothing(monkeypatch, tmp_path):
    fake = tmp_path / "fake-g++"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo fake 1.0; exit 0; }\n"
                    "echo 'x.cc:1: error: no' >&2; exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("MOF_NATIVE_CACHE", str(tmp_path / "cache"))
    got = native.build()
    assert got.path is None and "build failed (x.cc:1: error: no)" in got.note
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_register_without_library_leaves_options_alone(monkeypatch, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    so = ort.SessionOptions()
    got = native.register(so)
    assert got.path is None and got.note.endswith("stock graphs")


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ on this host: the library cannot be built")
def test_builds_and_names_its_kernels(monkeypatch, tmp_path):
    monkeypatch.setenv("MOF_NATIVE_CACHE", str(tmp_path / "cache"))
    got = native.build()
    assert got.path is not None and got.path.is_file(), got.note
    assert got.isa in ("avx512vnni", "avx2", "scalar")
    assert native.build().path == got.path                  # cached: the same file, not rebuilt


def test_an_installed_wheel_carries_every_source():
    """pyproject installs native/ as the package mof.native with every file the build reads, where
    source_dir() looks in an installed wheel (mof/native beside mof/runtime); and no source file
    of native/ is left out of SOURCES (a new one would not be built, nor shipped)."""
    import fnmatch
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "mof.native" in tool["packages"] and tool["package-dir"]["mof.native"] == "native"
    globs = tool["package-data"]["mof.native"]
    assert all(any(fnmatch.fnmatch(name, g) for g in globs) for name in native.SOURCES)
    on_disk = {p.name for p in (root / "native").iterdir() if p.suffix in (".h", ".cc")}
    assert on_disk == set(native.SOURCES)
    assert native.source_dir() == root / "native"
