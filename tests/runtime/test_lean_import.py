"""mof.runtime must import with numpy and onnxruntime only: it is what a desktop app embeds."""

import subprocess
import sys

HEAVY = ("tensorflow", "tf_keras", "keras", "tf2onnx", "xiaothink", "onnx", "torch",
         "fastapi", "uvicorn", "starlette", "pydantic", "prometheus_client",
         "prompt_toolkit")    # mof-run's line editor: loaded when a terminal chat starts, not before


def test_runtime_imports_no_export_side_modules():
    code = ("import sys, mof.runtime; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"mof.runtime pulled in: {out.stdout.strip()}"


def test_runtime_never_imports_quant_export_or_serve():
    code = ("import sys, mof.runtime; "
            "print([m for m in sys.modules if m.startswith(('mof.export', 'mof.quant', 'mof.serve'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
