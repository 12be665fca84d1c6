"""What a figure was measured on: the CPU's name, the SIMD flags that choose onnxruntime's int8
kernels, onnxruntime's version. Every accuracy record and benchmark report names its machine
with these (one definition for mof-quantize, mof-eval, mof-bench and benchmarks/)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

# The flags that select onnxruntime's int8 kernels, in the order reports list them.
CPU_FEATURES = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                "avx_vnni_int8", "amx_int8")


def _cpuinfo_field(key: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo on Linux, sysctl on macOS, platform.processor() else."""
    name = _cpuinfo_field("model name")
    if name:
        return name
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (/proc/cpuinfo); empty where the system does not list them."""
    return set(_cpuinfo_field("flags").split())


def cpu_features() -> dict:
    """{"model", "machine", "flags"}: the CPU and those of its flags in CPU_FEATURES."""
    flags = cpu_flags()
    return {"model": cpu_name() or platform.machine(), "machine": platform.machine(),
            "flags": [f for f in CPU_FEATURES if f in flags]}


def measured_on() -> dict:
    """The record an accuracy report keeps of its machine: the CPU and onnxruntime's version."""
    import onnxruntime as ort
    return {"cpu": cpu_features(), "onnxruntime": ort.__version__}


def machine_info() -> dict:
    """What a benchmark report says of its machine."""
    import numpy as np
    import onnxruntime as ort
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "numpy": np.__version__, "platform": platform.platform()}


def describe_machine(measured_on: dict) -> str:
    """One line for a ``measured_on`` record."""
    cpu = measured_on.get("cpu") or {}
    flags = " ".join(cpu.get("flags") or []) or "no SIMD flags known"
    return f"{cpu.get('model') or 'unknown CPU'} ({flags}), onnxruntime {measured_on.get('onnxruntime', '?')}"
