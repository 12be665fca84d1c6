"""What a figure was measured on: the CPU (mof.runtime.machine: its name and the SIMD flags that
choose onnxruntime's int8 kernels) and onnxruntime's version. Every accuracy record and benchmark
report names its machine with these (one definition for mof-quantize, mof-eval, mof-bench and
benchmarks/)."""

from __future__ import annotations

import os
import platform

from mof.runtime.machine import CPU_FEATURES, cpu_features, cpu_flags, cpu_name, describe_cpu  # noqa: F401


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
    return f"{describe_cpu(measured_on.get('cpu') or {})}, onnxruntime {measured_on.get('onnxruntime', '?')}"
