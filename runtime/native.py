"""mof's optional native onnxruntime ops (docs/native.md): built from the project's own C++ sources
(native/) with the host's C++ compiler into a cache folder, loaded with
``SessionOptions.register_custom_ops_library``. Never required: without a compiler, or when the
build fails, ``load()`` says why in one line and the stock graphs run as always.

    python -m mof.runtime.native [--rebuild]      # build (or find) the library, print what runs
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DOMAIN = "mof.native"                  # the custom ops' ONNX domain
OPS = ("RowwiseQMatMul", "QGru")      # the ops the library registers in DOMAIN (docs/native.md)
# QGru computes sigmoid and tanh as onnxruntime does on a CPU with FMA (its MLAS FMA3 kernels); on
# one without, onnxruntime's own differ, so graphs with QGru run only where the CPU has FMA
NEEDS_FMA = ("QGru",)
ORT_API = 17                           # the OrtApi version the library asks for (native/mof_ops.cc)
SOURCES = ("ort_abi.h", "op_util.h", "qgemm.h", "qgemm.cc", "gru.h", "gru.cc", "gru_op.cc", "mof_ops.cc")
LIBRARY = "libmof_native.so"
# plain x86-64 code (no -march: the artifact must run on any x86-64 CPU; the AVX2 and AVX-512 VNNI
# kernels are chosen at run time), no FMA contraction (the stock graph's float steps, one by one)
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fvisibility=hidden")
BUILD_TIMEOUT_S = 300                  # one compile of the sources takes ~5 s on a 2-core VM


@dataclass(frozen=True)
class Native:
    path: Optional[Path]               # the built library; None when not available
    isa: str                           # the kernels it runs on this CPU: avx512vnni / avx2 / scalar; "" if none
    note: str                          # one line: what runs, or why the stock graphs do
    fma: bool = False                  # the CPU has FMA (onnxruntime's sigmoid and tanh are its FMA3 kernels)


def source_dir() -> Path:
    """native/ beside the package folders: the repository's (a checkout, an editable install) or the
    installed package's mof/native (a wheel carries the sources: pyproject's package-data)."""
    return Path(__file__).resolve().parents[1] / "native"


def cache_dir() -> Path:
    """$MOF_NATIVE_CACHE, else $XDG_CACHE_HOME/mof/native, else ~/.cache/mof/native."""
    if os.environ.get("MOF_NATIVE_CACHE"):
        return Path(os.environ["MOF_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mof" / "native"


def compiler() -> Optional[str]:
    """$CXX, else g++ on PATH."""
    return shutil.which(os.environ.get("CXX") or "g++")


def _key(cxx: str, src: Path) -> str:
    """The build's identity: sources, flags, compiler version (a change of any rebuilds)."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (src / name).read_bytes())
    h.update(" ".join(FLAGS).encode())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    h.update(version.encode())
    return h.hexdigest()[:16]


def _compile(cxx: str, src: Path, target: Path) -> Optional[str]:
    """Build into ``target`` (written whole or not at all); the first error line, or None."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [cxx, *FLAGS, "-o", tmp, *(str(src / n) for n in SOURCES if n.endswith(".cc"))]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if "error" in ln] or done.stderr.splitlines() or ["?"]
            return lines[0].strip()
        os.replace(tmp, target)
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(rebuild: bool = False) -> Native:
    """The library for this host, built once per source/compiler version; never raises."""
    src = source_dir()
    if not all((src / n).is_file() for n in SOURCES):
        return Native(None, "", f"native ops: not available (no sources in {src}); stock graphs")
    cxx = compiler()
    if cxx is None:
        return Native(None, "", "native ops: not available (no C++ compiler: set CXX or install g++); stock graphs")
    try:
        target = cache_dir() / _key(cxx, src) / LIBRARY
    except (OSError, subprocess.SubprocessError) as e:
        return Native(None, "", f"native ops: not available ({e}); stock graphs")
    if rebuild or not target.is_file():
        err = _compile(cxx, src, target)
        if err is not None:
            return Native(None, "", f"native ops: build failed ({err}); stock graphs")
    try:
        lib = ctypes.CDLL(str(target))
        lib.MofNativeIsa.restype = ctypes.c_char_p
        kernels, fma = lib.MofNativeIsa().decode(), bool(lib.MofNativeCpuHasFma())
    except (OSError, AttributeError) as e:
        return Native(None, "", f"native ops: cannot load {target} ({e}); stock graphs")
    return Native(target, kernels, f"native ops: {DOMAIN} ({kernels} kernels) from {target}", fma)


def register(so, native: Optional[Native] = None) -> Native:
    """Register the library with an ``onnxruntime.SessionOptions`` when it is available."""
    native = native or build()
    if native.path is None:
        return native
    try:
        so.register_custom_ops_library(str(native.path))
    except Exception as e:              # onnxruntime raises its own Fail / RuntimeError types
        return Native(None, "", f"native ops: onnxruntime refused the library ({str(e).splitlines()[0]}); stock graphs")
    return native


def main(argv=None) -> int:
    rebuild = "--rebuild" in (argv if argv is not None else sys.argv[1:])
    native = build(rebuild=rebuild)
    print(native.note)
    return 0 if native.path is not None else 1


if __name__ == "__main__":
    sys.exit(main())
