"""What this machine is, as far as onnxruntime's kernels care: the CPU's name, its architecture and
the instruction-set flags that choose onnxruntime's int8 and int4 kernels (x86: /proc/cpuinfo
"flags"; ARM64: "Features"). Reports (mof-quantize, mof-eval, mof-bench), the self-check's
references and its verdicts all describe a machine with ``cpu_features`` (mof.measure.machine
adds onnxruntime's version and what benchmarks report)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

# The flags that select onnxruntime's int8/int4 kernels, in the order reports list them:
# x86 (VNNI, AMX), then ARM64 (dot product, int8 matrix multiply, SVE).
CPU_FEATURES = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                "avx_vnni_int8", "amx_int8", "asimddp", "i8mm", "sve")
AMX = "amx_int8"


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
    name = _cpuinfo_field("model name") or _cpuinfo_field("Model name")
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
    """The CPU's feature flags (/proc/cpuinfo: "flags" on x86, "Features" on ARM64); empty where
    the system does not list them."""
    return set((_cpuinfo_field("flags") or _cpuinfo_field("Features")).split())


def cpu_features() -> dict:
    """{"model", "machine", "flags"}: the CPU, its architecture and those of its flags in
    CPU_FEATURES."""
    flags = cpu_flags()
    return {"model": cpu_name() or platform.machine(), "machine": platform.machine(),
            "flags": [f for f in CPU_FEATURES if f in flags]}


def same_cpu_kind(a: dict, b: dict, flags: Optional[Sequence[str]] = None) -> bool:
    """Two ``cpu_features`` records choose the same onnxruntime kernels: same architecture and the
    same of ``flags`` (None: every kernel-selecting flag). A record without "machine", made before
    it was kept, is x86-64."""
    def arch(r: dict) -> str:
        name = str(r.get("machine") or "x86_64").lower()
        return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)
    pick = lambda r: [f for f in (r.get("flags") or []) if flags is None or f in flags]
    return arch(a) == arch(b) and pick(a) == pick(b)


def describe_cpu(cpu: dict) -> str:
    """One line for a ``cpu_features`` record: "AMD EPYC (avx2 fma avx512f ...)"."""
    flags = " ".join(cpu.get("flags") or []) or "no SIMD flags known"
    return f"{cpu.get('model') or 'unknown CPU'} ({flags})"
