"""Writing manifest.json (docs/bundle-format.md): the one module that makes a manifest and
changes it. mof-export makes it (``make_manifest``, ``set_validation``, ``set_stream_report``,
``set_self_check``), mof-quantize adds a precision (``add_precision``, ``record_weights``),
``mof-check --record`` replaces the self-check's references (``set_self_check``), mof-quantize
--native adds fused graphs (``add_native``; ``without_native`` drops them), upgrading a
bundle marks it current (``mark_current``), and ``write_manifest`` serializes it
(BundleWriter.commit). Readers use mof.runtime.manifest.Manifest. No onnx here: mof-check, which
needs only the runtime, writes through it too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from mof.runtime.chat import FORMS
from mof.runtime.config import ModelConfig
from mof.runtime.contract import (FORMAT, FORMAT_VERSION, FP32, GRAPH_FILES, GRAPH_FULL, GRAPH_STEP, GRAPH_WINDOW,
                                  MANIFEST_FILE, NATIVE, POSITION, QUANTIZED_FILES, QUANTIZED_GRAPHS, VOCAB_FILE,
                                  graph_io, native_key)
from mof.runtime.errors import BundleError
from mof.runtime.manifest import UNSAID_FORM
from mof.runtime.ort_compat import record as onnxruntime_record
from mof.runtime.selfcheck import SECTION as SELF_CHECK
from mof.runtime.state import state_io, state_shapes


def graph_entry(graph: str, config: ModelConfig) -> dict[str, Any]:
    """The manifest entry of one graph: its fp32 file and its inputs and outputs (as
    mof.runtime.contract.graph_io declares them)."""
    io = graph_io(graph, config)
    return {FP32: GRAPH_FILES[graph], "inputs": [t.to_dict() for t in io.inputs],
            "outputs": [t.to_dict() for t in io.outputs]}


def state_section(config: ModelConfig) -> dict[str, Any]:
    """How big a sequence's recurrent state is, and which graph tensors carry it."""
    floats = 0
    fields = []
    for (name_in, name_out, shape), field in zip(state_io(config), state_shapes(config)):
        n = 1
        for d in shape:
            n *= 1 if d == "batch" else d
        floats += n
        fields.append({"field": field, "input": name_in, "output": name_out, "dtype": "float32",
                       "shape": shape})
    return {"fields": fields, "position_input": POSITION, "floats_per_sequence": floats,
            "bytes_per_sequence": 4 * floats}


def make_manifest(config: ModelConfig, *, model_type: Optional[str], vocab: dict[str, Any],
                  validation: dict[str, Any], producer: dict[str, str],
                  source: dict[str, Any],
                  graphs: tuple[str, ...] = (GRAPH_FULL, GRAPH_WINDOW, GRAPH_STEP),
                  stream: dict[str, Any] | None = None, form: str = UNSAID_FORM) -> dict[str, Any]:
    """A complete manifest except ``files`` (the BundleWriter adds hashes at commit)."""
    if form not in FORMS:
        raise BundleError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"model_type": model_type, **config.to_dict()},
        "form": form,
        "vocab": {"file": VOCAB_FILE, **vocab},
        "graphs": {g: graph_entry(g, config) for g in graphs},
        "state": state_section(config),
        "validation": validation,
        "stream": stream or {},
        "producer": producer,
        "source": source,
        "onnxruntime": {FP32: onnxruntime_record(FP32, config=config)},   # mof-quantize adds its precision's
    }


def set_validation(manifest: dict, report: dict) -> None:
    """Store mof-export's parity report (TensorFlow vs onnxruntime, oracle vs step and chunk)."""
    manifest["validation"] = report


def set_stream_report(manifest: dict, stream: dict) -> None:
    """Store the stream policy table and its recommendation (mof.measure.policies)."""
    manifest["stream"] = stream
    manifest["recommended_mode"] = stream["recommended_mode"]
    manifest["recommended_refill_every"] = stream["recommended_refill_every"]


def set_self_check(manifest: dict, section: dict) -> None:
    """Store the self-check's probes and reference logits (mof.runtime.selfcheck.make_reference)."""
    manifest[SELF_CHECK] = section


def add_precision(manifest: dict, precision: str, record: dict, onnxruntime: dict,
                  stream: Optional[dict] = None, self_check: Optional[dict] = None) -> dict:
    """A copy of ``manifest`` with a quantized precision: its graph files named in every decoding
    graph's entry, its record ({"quantization", "accuracy"}) under its own key, the onnxruntime
    it was measured with, and (when given) the policy table with its ms per token."""
    manifest = without_native(manifest, precision)        # fused graphs of the old weights go
    for name in QUANTIZED_GRAPHS:
        if name in manifest["graphs"]:
            manifest["graphs"][name][precision] = QUANTIZED_FILES[precision][name]
    manifest[precision] = record
    manifest["onnxruntime"] = {**(manifest.get("onnxruntime") or {}), precision: onnxruntime}
    if stream is not None:
        manifest["stream"] = stream
    if self_check is not None:
        set_self_check(manifest, self_check)
    return manifest


def native_record(fused: dict[str, int], kernels: str, probes: int, grus: Optional[dict[str, int]] = None) -> dict:
    """What ``add_native`` records of one precision's fused graphs: products (and GRUs) fused per
    graph, and the bit-for-bit check they passed before they were written (the kernels it ran, how
    many probes)."""
    from mof.runtime.ort_compat import current
    return {"fused_products": dict(fused), **({"fused_grus": dict(grus)} if grus is not None else {}),
            "checked": {"bit_equal": True, "probes": probes, "kernels": kernels, "onnxruntime": current()}}


def add_native(manifest: dict, precision: str, files: dict[str, str], record: dict) -> dict:
    """A copy of ``manifest`` with ``precision``'s fused graphs (graph name -> file) named under
    ``graphs.<name>.<precision>_native`` and the custom ops they need under ``native``
    (docs/bundle-format.md; they read ``precision``'s weights file)."""
    from mof.runtime.native import DOMAIN, OPS, ORT_API
    manifest = without_native(manifest, precision)
    for name, file in files.items():
        manifest["graphs"][name][native_key(precision)] = file
    section = manifest.get(NATIVE) or {}
    manifest[NATIVE] = {"domain": DOMAIN, "ops": list(OPS), "abi": ORT_API,
                        "precisions": {**(section.get("precisions") or {}), precision: record}}
    return manifest


def without_native(manifest: dict, precision: Optional[str] = None) -> dict:
    """A copy of ``manifest`` without the fused graphs of ``precision`` (None: of every precision)."""
    manifest = dict(manifest)
    manifest["graphs"] = {k: dict(v) for k, v in manifest["graphs"].items()}
    keys = {native_key(p) for p in ([precision] if precision else QUANTIZED_FILES)}
    for entry in manifest["graphs"].values():
        for key in keys & set(entry):
            del entry[key]
    section = manifest.pop(NATIVE, None) or {}
    kept = {p: r for p, r in (section.get("precisions") or {}).items() if native_key(p) not in keys}
    if kept:
        manifest[NATIVE] = {**section, "precisions": kept}
    return manifest


def record_weights(manifest: dict, precision: str, graphs: Iterable[str], weights: str) -> None:
    """Record that ``precision``'s graphs (graph names) are stored with their large weights in
    ``weights`` (format 2)."""
    files = QUANTIZED_FILES.get(precision, GRAPH_FILES)
    manifest["graphs"] = {k: dict(v) for k, v in manifest["graphs"].items()}
    for n in graphs:
        manifest["graphs"][n][precision] = files[n]
    manifest["weights"] = {**manifest.get("weights", {}), precision: weights}
    mark_current(manifest)


def mark_current(manifest: dict) -> None:
    """The manifest describes a bundle in this mof's format (FORMAT_VERSION)."""
    manifest["format_version"] = FORMAT_VERSION


def without_files(manifest: dict) -> dict:
    """A verified bundle's manifest as a starting point for a new one (the writer re-hashes)."""
    return {k: v for k, v in manifest.items() if k != "files"}


def write_manifest(folder: Path, manifest: dict, files: dict[str, Any]) -> None:
    """Write ``folder``/manifest.json: ``manifest`` with ``files`` (name -> sha256 and bytes),
    flushed to disk before the caller renames the folder into place."""
    with open(Path(folder) / MANIFEST_FILE, "w", encoding="utf-8") as f:
        json.dump({**manifest, "files": files}, f, ensure_ascii=False, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
