"""onnxruntime is not a base dependency of mof (docs/embedding.md): say what to install when it is missing."""

from __future__ import annotations

import sys
from pathlib import Path

MISSING = ("mof needs onnxruntime, in the flavour the app chooses: pip install 'mof[cpu]' "
           "(or mof[gpu], mof[directml], mof[openvino], or the app's own onnxruntime; docs/embedding.md)")


def require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
        return
    except ModuleNotFoundError as e:
        if e.name != "onnxruntime":
            raise
    prog = Path(sys.argv[0] if sys.argv else "").name
    if prog.startswith("mof-"):                  # a console script: one line and exit 1, no traceback
        print(f"{prog}: error: {MISSING}", file=sys.stderr)
        raise SystemExit(1)
    raise ModuleNotFoundError(MISSING, name="onnxruntime")
