"""Add int8 graphs to a bundle: quantize, measure against fp32, gate, record."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from mof.runtime.bundle import BundleWriter, verify_bundle
from mof.runtime.contract import FP32, INT8, INT8_FILES, MANIFEST_FILE
from mof.runtime.errors import MofError
from mof.runtime.manifest import model_config
from mof.runtime.model import Model, session_options
from mof.runtime.vocab import Vocabulary

from .calibration import load_calibration_text
from .int8 import cpu_features, quantize_model, scheme
from .report import int8_report, print_report


def make_int8(fp32_blobs: dict[str, bytes], manifest: dict, vocab: Vocabulary, *,
              calibration_text: Optional[Path], eval_tokens: int, allow_degraded: bool,
              log: Callable[[str], None]) -> tuple[dict[str, bytes], dict]:
    """Quantize every graph of INT8_FILES the same way. Returns (int8 blobs, manifest additions:
    the scheme, the accuracy report and, when the manifest has a stream policy table, the table
    with int8's ms per token)."""
    import onnx
    import onnxruntime as ort

    log("      weights int8 per output channel; activations uint8 with one scale per row; "
        "uint8 x uint8 products (exact on every x86 CPU)")
    blobs = {}
    for name in INT8_FILES:
        q = quantize_model(onnx.load_from_string(fp32_blobs[name]))
        blobs[name] = q.SerializeToString()
        log(f"      {INT8_FILES[name]}: {len(blobs[name]) / 1e6:.1f} MB "
            f"(fp32 {len(fp32_blobs[name]) / 1e6:.1f} MB)")
    so = session_options(None)
    models = {}
    for precision, source in ((FP32, fp32_blobs), (INT8, blobs)):
        sessions = {n: ort.InferenceSession(source[n], sess_options=so, providers=["CPUExecutionProvider"])
                    for n in INT8_FILES}
        models[precision] = Model(Path("."), manifest, sessions, vocab, precision)
    text = load_calibration_text(calibration_text)
    source = calibration_text.name if calibration_text else "built-in"
    report = int8_report(models[FP32], models[INT8], text, eval_tokens, source)
    report["measured_on"] = measured_on()
    print_report(report, log)
    fp32_bytes = sum(len(fp32_blobs[n]) for n in INT8_FILES)
    int8_bytes = sum(len(blobs[n]) for n in INT8_FILES)
    report["bytes"] = {"fp32": fp32_bytes, "int8": int8_bytes, "ratio": int8_bytes / fp32_bytes}
    log(f"      int8 step + chunk graphs: {int8_bytes / 1e6:.1f} MB = "
        f"{int8_bytes / fp32_bytes:.1%} of fp32")
    if not report["passed"]:
        msg = (f"int8 accuracy below the gates (top-1 agreement >= {report['gates']['min_top1_agreement']:.0%}, "
               f"perplexity change <= +{report['gates']['max_perplexity_change']:.0%}): exact "
               f"{report['exact']['top1_agreement']:.1%} / {report['exact']['perplexity_change']:+.1%}, "
               f"stream {report['stream']['top1_agreement']:.1%} / {report['stream']['perplexity_change']:+.1%}")
        if not allow_degraded:
            raise MofError(msg + "; nothing written (use --allow-degraded to keep it anyway)")
        log(f"      WARNING: {msg}; kept because of --allow-degraded")
    additions = {"quantization": scheme(), "accuracy": report}
    if manifest.get("stream", {}).get("policies"):      # the policy table gains int8's ms per token
        from .policies import add_timings, format_table
        additions["stream"] = add_timings(manifest["stream"], INT8, models[INT8], text, eval_tokens)
        for line in format_table(additions["stream"]).splitlines():
            log("      " + line)
    return blobs, additions


def measured_on() -> dict:
    """The machine an accuracy report was measured on: CPU model, the SIMD flags that choose
    onnxruntime's int8 kernels, onnxruntime's version."""
    import onnxruntime as ort
    return {"cpu": cpu_features(), "onnxruntime": ort.__version__}


def int8_accuracy(bundle_dir: Path, text: Optional[str] = None, eval_tokens: Optional[int] = None,
                  source: Optional[str] = None, threads: Optional[int] = None) -> dict:
    """Measure a bundle's int8 graphs against its fp32 graphs on this machine (exact and stream
    mode). ``text`` defaults to the built-in sample, ``eval_tokens`` to what the manifest's report
    used. Returns the same table as the manifest's ``accuracy`` section (with ``measured_on`` this
    machine), plus ``recorded``: the manifest's own figures and where they were measured."""
    bundle_dir = Path(bundle_dir)
    fp32 = Model.load(bundle_dir, threads=threads)
    int8 = Model.load(bundle_dir, int8=True, threads=threads)
    recorded = fp32.manifest.get("accuracy") or {}
    if eval_tokens is None:
        eval_tokens = int(recorded.get("tokens") or 256)
    if text is None:
        text, source = load_calibration_text(None), "built-in"
    report = int8_report(fp32, int8, text, eval_tokens, source or "given")
    report["measured_on"] = measured_on()
    report["recorded"] = {k: recorded.get(k) for k in ("text", "tokens", "exact", "stream", "measured_on")
                          if k in recorded}
    report["quantization"] = fp32.manifest.get("quantization")
    return report


def apply_int8(manifest: dict, additions: dict) -> dict:
    manifest = dict(manifest)
    manifest["graphs"] = {k: dict(v) for k, v in manifest["graphs"].items()}
    for name, file in INT8_FILES.items():
        manifest["graphs"][name][INT8] = file
    manifest.update(additions)
    return manifest


def quantize_bundle(bundle_dir: Path, *, calibration_text: Optional[Path] = None,
                    eval_tokens: int = 256, allow_degraded: bool = False, force: bool = False,
                    log: Callable[[str], None] = print) -> Path:
    """Add int8 graphs to an existing bundle, atomically (the bundle is replaced as a whole)."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    if any(INT8 in manifest["graphs"].get(n, {}) for n in INT8_FILES) and not force:
        raise MofError(f"{bundle_dir} already has int8 graphs (use --force to redo them)")
    missing = [n for n in INT8_FILES if n not in manifest["graphs"]]
    if missing:
        raise MofError(f"{bundle_dir} has no {', '.join(missing)} graph; re-export it with this mof-export")
    model_config(manifest)
    vocab = Vocabulary.from_json_file(bundle_dir / manifest["vocab"]["file"])
    fp32 = {n: (bundle_dir / manifest["graphs"][n][FP32]).read_bytes() for n in INT8_FILES}
    blobs, additions = make_int8(fp32, manifest, vocab, calibration_text=calibration_text,
                                 eval_tokens=eval_tokens, allow_degraded=allow_degraded, log=log)
    new_manifest = apply_int8({k: v for k, v in manifest.items() if k != "files"}, additions)
    with BundleWriter(bundle_dir, force=True) as w:
        for name in manifest["files"]:
            if name in INT8_FILES.values() or name == MANIFEST_FILE:
                continue
            shutil.copy2(bundle_dir / name, w.path(name))    # own copies: bundles hold no hard links
        for name, blob in blobs.items():
            w.path(INT8_FILES[name]).write_bytes(blob)
        return w.commit(new_manifest)
