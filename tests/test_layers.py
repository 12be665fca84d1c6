"""The packages import one way (src/mof/__init__.py): each imports only the packages it is allowed
to, read from every import statement of every module (function-level ones included), so a lazy
import cannot break the layering either. And the modules that a runtime-only install runs
(mof-eval, the manifest writer) load neither onnx nor TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"runtime": "runtime", "writer": "writer", "measure": "measure", "quant": "quant",
           "export": "export", "bench": "bench", "serve": "serve", "web": "web"}
# What each package may import (besides itself and the top-level ``mof`` package).
ALLOWED = {
    "runtime": set(),
    "writer": {"runtime"},
    "measure": {"runtime", "writer"},
    "quant": {"runtime", "writer", "measure"},
    "export": {"runtime", "writer", "measure", "quant"},
    "bench": {"runtime", "writer", "measure"},
    "serve": {"runtime"},
    "web": {"runtime", "serve"},       # mof-web: verifies with the runtime, reuses mof-serve's stylesheet
}


def imported_packages(path: Path, package: str) -> set[tuple[str, int]]:
    """(mof subpackage, line) of every import in ``path``; relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [f"mof.{package}"]
            elif node.level >= 2:
                names = [f"mof.{node.module}" if node.module else "mof"]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mof" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def test_every_package_is_listed():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name in FOLDERS}
    assert packages == set(ALLOWED), "a package folder is missing from ALLOWED (or gone)"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    wrong = []
    for path in sorted((ROOT / FOLDERS[package]).rglob("*.py")):
        for target, line in imported_packages(path, package):
            if target != package and target not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports mof.{target}")
    assert not wrong, f"mof.{package} may import only {sorted(ALLOWED[package]) or 'nothing of mof'}: " + "; ".join(wrong)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from .x import y\n\ndef f():\n    from mof.export.cli import main\n    import mof.serve.app\n")
    assert {t for t, _ in imported_packages(f, "runtime")} == {"runtime", "export", "serve"}


def test_runtime_only_modules_load_no_onnx_or_tensorflow():
    modules = ["mof.measure.eval_cli", "mof.measure.policies", "mof.measure.report", "mof.measure.machine",
               "mof.writer.manifest", "mof.writer.bundle_writer"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(','.join(m for m in ('onnx', 'tensorflow', 'tf_keras', 'tf2onnx', 'xiaothink') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"


def test_one_module_writes_manifest_json():
    """Every write of a file named MANIFEST_FILE / manifest.json in the library is in writer/manifest.py."""
    writes = []
    for folder in FOLDERS.values():
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                text = ast.unparse(node)
                names_manifest = "MANIFEST_FILE" in text or "manifest.json" in text
                writes_file = (text.startswith(("open(", "io.open(")) and any(m in text for m in ("'w'", "'x'", "'a'"))) \
                    or ".write_text(" in text or ".write_bytes(" in text
                if names_manifest and writes_file:
                    writes.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(writes) == 1 and writes[0].startswith("writer/manifest.py:"), writes
