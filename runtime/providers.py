"""Execution providers: which onnxruntime backend runs the graphs (docs/embedding.md).

The CPU provider is the default and the one every recorded figure was measured on. Another comes
with the onnxruntime flavour the app installed (onnxruntime-openvino, -directml, -gpu, ...), or
from a plugin EP library the app registered with ``onnxruntime.register_execution_provider_library``
(onnxruntime 1.22+); a provider that is not there, or a plugin that offers no device on this
machine, is an error, never a silent fall-back to the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import onnxruntime as ort

from .errors import MofError

CPU = "CPUExecutionProvider"
ALIASES = {          # short names (--provider NAME, case-insensitive) -> onnxruntime's
    "cpu": CPU, "openvino": "OpenVINOExecutionProvider", "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider", "rocm": "ROCMExecutionProvider", "migraphx": "MIGraphXExecutionProvider",
    "qnn": "QNNExecutionProvider", "xnnpack": "XnnpackExecutionProvider", "vitisai": "VitisAIExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}
FLAVOURS = {         # the package that brings a provider, for the error message
    "OpenVINOExecutionProvider": "onnxruntime-openvino (or a plugin EP package such as onnxruntime-ep-openvino)",
    "DmlExecutionProvider": "onnxruntime-directml (Windows)", "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu", "CoreMLExecutionProvider": "onnxruntime (macOS builds)",
    "QNNExecutionProvider": "onnxruntime-qnn", "ROCMExecutionProvider": "onnxruntime-rocm",
    "MIGraphXExecutionProvider": "onnxruntime-migraphx", "VitisAIExecutionProvider": "onnxruntime-vitisai",
}
NO_BRANCHES = {      # providers that must not run the decode graph's Ifs: they get the step and chunk graphs
    # OpenVINO 2025.4 (the one onnxruntime-openvino 1.24.1 bundles): when the chunk's length changes
    # between calls, a refill's state and logits are NaN now and then, from an If's output (its
    # memory reused too early, it seems; docs/embedding.md); OpenVINO 2026.4 on its own computes them right
    "OpenVINOExecutionProvider",
}
Provider = Union[str, tuple]         # a name, or (name, {option: value}) as onnxruntime takes them


@dataclass(frozen=True)
class Providers:
    """What Model.load hands onnxruntime for each session."""
    names: tuple[str, ...]                          # in order of preference; CPU last, as the fall-back
    options: tuple[dict, ...]                       # provider options, one dict per name
    plugin: dict = field(default_factory=dict)      # plugin EP name -> its devices (add_provider_for_devices)

    def session_args(self) -> dict:
        """InferenceSession keyword arguments for the classic providers (plugins go on the options)."""
        listed = [(n, o) for n, o in zip(self.names, self.options) if n not in self.plugin]
        return {"providers": [n for n, _ in listed], "provider_options": [o for _, o in listed]}

    def add_plugins(self, so: "ort.SessionOptions") -> None:
        for name, devices in self.plugin.items():
            so.add_provider_for_devices(devices, dict(self.options[self.names.index(name)]))

    @property
    def accelerated(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n != CPU)

    @property
    def runs_branches(self) -> bool:
        """May these providers run a graph with If nodes (the decode graph)? (NO_BRANCHES)"""
        return not any(n in NO_BRANCHES for n in self.names)


def canonical(name: str) -> str:
    """'openvino' / 'OpenVINO' / 'OpenVINOExecutionProvider' -> 'OpenVINOExecutionProvider'."""
    text = name.strip()
    key = text.lower().removesuffix("executionprovider")
    return ALIASES.get(key, text if text.endswith("ExecutionProvider") else text + "ExecutionProvider")


def parse(spec: str) -> Provider:
    """A --provider value: NAME or NAME:key=value,key=value (onnxruntime's provider options)."""
    name, _, opts = spec.partition(":")
    if not name.strip():
        raise MofError(f"--provider expects NAME[:key=value,...], got {spec!r}")
    if not opts:
        return canonical(name)
    options = {}
    for item in opts.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise MofError(f"--provider options are key=value pairs separated by commas, got {item!r}")
        options[key.strip()] = value.strip()
    return canonical(name), options


def resolve(providers: Optional[Union[Provider, Sequence[Provider]]]) -> Providers:
    """Check the providers asked for against this onnxruntime; the CPU provider ends the list."""
    if providers is None:
        providers = [CPU]
    elif isinstance(providers, str):
        providers = [parse(providers)]
    elif isinstance(providers, tuple):
        providers = [providers]
    names, options = [], []
    for p in providers:
        name, opts = (p, {}) if isinstance(p, str) else (p[0], dict(p[1]) if len(p) > 1 else {})
        name = canonical(name)
        if name not in names:
            names.append(name)
            options.append(opts)
    if CPU not in names:
        names.append(CPU)
        options.append({})
    available = ort.get_available_providers()
    plugin = {}
    for name in names:
        if name in available:
            continue
        devices = [d for d in _ep_devices() if d.ep_name == name]
        if devices:
            plugin[name] = devices
            continue
        have = ", ".join(sorted(p.removesuffix("ExecutionProvider") for p in available))
        hint = f"; it comes with {FLAVOURS[name]}" if name in FLAVOURS else ""
        raise MofError(f"onnxruntime {ort.__version__} has no {name} (it has: {have}){hint}; a plugin "
                       "EP must be registered by the app and offer a device here (docs/embedding.md)")
    return Providers(tuple(names), tuple(options), plugin)


def _ep_devices() -> list:
    get = getattr(ort, "get_ep_devices", None)       # onnxruntime 1.22+
    try:
        return list(get()) if get else []
    except Exception:                                 # an onnxruntime build without the API's backing
        return []
