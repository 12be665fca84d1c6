"""Add quantized graphs (int8 or int4) to a bundle: quantize, measure against fp32, gate, record."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from mof.runtime.bundle import BundleWriter, verify_bundle
from mof.runtime.contract import (FORMAT_VERSION, FP32, GRAPH_CHUNK, GRAPH_DECODE, GRAPH_STEP, INT4, INT8,
                                  MANIFEST_FILE, PRECISIONS, QUANTIZED_FILES, QUANTIZED_GRAPHS)
from mof.runtime.errors import MofError
from mof.runtime.manifest import Manifest, model_config
from mof.runtime.model import Model, session_options
from mof.runtime.vocab import Vocabulary

from .calibration import load_calibration_text
from .report import int8_report, print_report


def _quantizer(precision: str):
    """(what the log says about the scheme, ModelProto -> ModelProto, the scheme's manifest record)."""
    if precision == INT8:
        from .int8 import quantize_model, scheme
        return ("weights 7-bit int8 per output channel; activations uint8 with one scale per row; "
                "uint8 x int8 products that cannot saturate (exact on every x86 CPU)", quantize_model, scheme())
    if precision == INT4:
        from .int4 import quantize_model_int4, scheme
        record = scheme()
        return f"weights {record['weights']}; {record['kernel']}", quantize_model_int4, record
    raise MofError(f"cannot quantize to {precision!r}")


def make_quantized(precision: str, fp32_blobs: dict[str, bytes], manifest: dict, vocab: Vocabulary, *,
                   calibration_text: Optional[Path], eval_tokens: int, allow_degraded: bool,
                   log: Callable[[str], None]) -> tuple[dict[str, bytes], dict]:
    """Quantize every graph given (graph name -> fp32 bytes: step, chunk, decode) the same way. Returns
    (graph name -> quantized bytes, manifest additions: the scheme, the accuracy report and, when
    the manifest has a stream policy table, the table with this precision's ms per token)."""
    import onnx
    import onnxruntime as ort

    what, quantize, scheme = _quantizer(precision)
    files = QUANTIZED_FILES[precision]
    log(f"      {what}")
    blobs = {}
    for name in fp32_blobs:
        q = quantize(onnx.load_from_string(fp32_blobs[name]))
        blobs[name] = q.SerializeToString()
        log(f"      {files[name]}: {len(blobs[name]) / 1e6:.1f} MB "
            f"(fp32 {len(fp32_blobs[name]) / 1e6:.1f} MB)")
    so = session_options(None)
    models = {}
    run = [GRAPH_DECODE] if GRAPH_DECODE in blobs else list(blobs)     # measure what decoding runs
    for p, source in ((FP32, fp32_blobs), (precision, blobs)):
        sessions = {n: ort.InferenceSession(source[n], sess_options=so, providers=["CPUExecutionProvider"])
                    for n in run}
        models[p] = Model(Path("."), manifest, sessions, vocab, p)
    text = load_calibration_text(calibration_text)
    source = calibration_text.name if calibration_text else "built-in"
    report = int8_report(models[FP32], models[precision], text, eval_tokens, source)
    report["measured_on"] = measured_on()
    print_report(report, log)
    if not report["passed"]:
        msg = (f"{precision} accuracy below the gates (top-1 agreement >= "
               f"{report['gates']['min_top1_agreement']:.0%}, perplexity change <= "
               f"+{report['gates']['max_perplexity_change']:.0%}): exact "
               f"{report['exact']['top1_agreement']:.1%} / {report['exact']['perplexity_change']:+.1%}, "
               f"stream {report['stream']['top1_agreement']:.1%} / {report['stream']['perplexity_change']:+.1%}")
        if not allow_degraded:
            raise MofError(msg + "; nothing written (use --allow-degraded to keep it anyway)")
        log(f"      WARNING: {msg}; kept because of --allow-degraded")
    record = {"quantization": scheme, "accuracy": report}
    additions = dict(record) if precision == INT8 else {precision: record}
    from mof.runtime.ort_compat import record as onnxruntime_record     # the onnxruntime it was measured with
    additions["onnxruntime"] = {**(manifest.get("onnxruntime") or {}), precision: onnxruntime_record(precision, scheme["name"])}
    if manifest.get("stream", {}).get("policies"):      # the policy table gains this precision's ms/token
        from .policies import add_timings, format_table
        additions["stream"] = add_timings(manifest["stream"], precision, models[precision], text, eval_tokens)
        for line in format_table(additions["stream"]).splitlines():
            log("      " + line)
    return blobs, additions


def measured_on() -> dict:
    """The machine an accuracy report was measured on: CPU model, the SIMD flags that choose
    onnxruntime's int8 kernels, onnxruntime's version."""
    import onnxruntime as ort
    from .int8 import cpu_features
    return {"cpu": cpu_features(), "onnxruntime": ort.__version__}


def quantized_accuracy(bundle_dir: Path, text: Optional[str] = None, eval_tokens: Optional[int] = None,
                       source: Optional[str] = None, threads: Optional[int] = None,
                       precision: str = INT8) -> dict:
    """Measure a bundle's ``precision`` graphs against its fp32 graphs on this machine (exact and
    stream mode). ``text`` defaults to the built-in sample, ``eval_tokens`` to what the manifest's
    report used. Returns the same table as the manifest's accuracy record (with ``measured_on``
    this machine), plus ``recorded``: the manifest's own figures and where they were measured."""
    bundle_dir = Path(bundle_dir)
    fp32 = Model.load(bundle_dir, threads=threads)
    quant = Model.load(bundle_dir, precision=precision, threads=threads)
    rec = fp32.manifest.precision_record(precision)
    recorded = rec.get("accuracy") or {}
    if eval_tokens is None:
        eval_tokens = int(recorded.get("tokens") or 256)
    if text is None:
        text, source = load_calibration_text(None), "built-in"
    report = int8_report(fp32, quant, text, eval_tokens, source or "given")
    report["measured_on"] = measured_on()
    report["recorded"] = {k: recorded.get(k) for k in ("text", "tokens", "exact", "stream", "measured_on")
                          if k in recorded}
    report["quantization"] = rec.get("quantization")
    return report


def int8_accuracy(bundle_dir: Path, text: Optional[str] = None, eval_tokens: Optional[int] = None,
                  source: Optional[str] = None, threads: Optional[int] = None) -> dict:
    """``quantized_accuracy`` of the int8 graphs (the library's documented entry point)."""
    return quantized_accuracy(bundle_dir, text, eval_tokens, source, threads, INT8)


def apply_quantized(manifest: dict, precision: str, additions: dict) -> dict:
    manifest = dict(manifest)
    manifest["graphs"] = {k: dict(v) for k, v in manifest["graphs"].items()}
    for name in QUANTIZED_GRAPHS:
        if name in manifest["graphs"]:
            manifest["graphs"][name][precision] = QUANTIZED_FILES[precision][name]
    manifest.update(additions)
    return manifest


def quantize_bundle(bundle_dir: Path, *, precision: str = INT8, calibration_text: Optional[Path] = None,
                    eval_tokens: int = 256, allow_degraded: bool = False, force: bool = False,
                    log: Callable[[str], None] = print) -> Path:
    """Add ``precision`` graphs to an existing bundle, atomically (the bundle is replaced as a whole).
    The result is a format-2 bundle: a format-1 bundle's graphs are rewritten with their weights
    in one file per precision (docs/bundle-format.md)."""
    from mof.export.graph_store import load_graph, store_precision
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    if precision not in QUANTIZED_FILES:
        raise MofError(f"cannot quantize to {precision!r}")
    if any(precision in manifest["graphs"].get(n, {}) for n in QUANTIZED_GRAPHS) and not force:
        raise MofError(f"{bundle_dir} already has {precision} graphs (use --force to redo them)")
    missing = [n for n in (GRAPH_STEP, GRAPH_CHUNK) if n not in manifest["graphs"]]
    if missing:
        raise MofError(f"{bundle_dir} has no {', '.join(missing)} graph; re-export it with this mof-export")
    model_config(manifest)
    vocab = Vocabulary.from_json_file(bundle_dir / manifest["vocab"]["file"])
    fp32 = {n: load_graph(bundle_dir, manifest["graphs"][n][FP32]).SerializeToString()
            for n in QUANTIZED_GRAPHS if n in manifest["graphs"]}
    blobs, additions = make_quantized(precision, fp32, manifest, vocab, calibration_text=calibration_text,
                                      eval_tokens=eval_tokens, allow_degraded=allow_degraded, log=log)
    del fp32
    new_manifest = apply_quantized({k: v for k, v in manifest.items() if k != "files"}, precision, additions)
    with BundleWriter(bundle_dir, force=True) as w:
        copy_bundle_files(w, bundle_dir, manifest, new_manifest, leave_out=precision, log=log)
        store_precision(w, new_manifest, precision, blobs, log)
        return w.commit(new_manifest)


def copy_bundle_files(w: BundleWriter, bundle_dir: Path, manifest: dict, new_manifest: dict,
                      leave_out: Optional[str] = None, log: Callable[[str], None] = print) -> None:
    """Put a verified bundle's files into the bundle ``w`` is building, except the graphs (and
    weights file) of precision ``leave_out``, in format 2, and record them in ``new_manifest``:
    a precision that already has its weights file is copied as it is; a format-1 precision's
    step and chunk graphs are rewritten with their weights in one file (full.onnx and window.onnx,
    for analysis, are copied: their weights are laid out differently). A format-1 bundle has no
    decode graph, and gets none: it is built from the checkpoint (mof-export)."""
    from mof.export.graph_store import load_graph, store_precision
    old = Manifest(manifest, str(bundle_dir))
    written = set()
    new_manifest["graphs"] = {k: dict(v) for k, v in new_manifest["graphs"].items()}
    new_manifest["weights"] = {}
    for p in PRECISIONS:
        files = {n: g[p] for n, g in manifest["graphs"].items()      # the decoding graphs; full.onnx
                 if n in QUANTIZED_GRAPHS                                # and window.onnx keep their
                 and isinstance(g, dict) and isinstance(g.get(p), str)}  # own weights
        weights = old.weights_file(p)
        written |= set(files.values()) | ({weights} if weights else set())
        if p == leave_out or not files:
            continue
        if weights:
            for f in set(files.values()) | {weights}:
                shutil.copy2(bundle_dir / f, w.path(f))   # own copies: bundles hold no hard links
            new_manifest["weights"][p] = weights
        else:
            store_precision(w, new_manifest, p, {n: load_graph(bundle_dir, f) for n, f in files.items()}, log)
    for name in manifest["files"]:                        # vocabulary and anything else listed
        if name not in written and name != MANIFEST_FILE:
            shutil.copy2(bundle_dir / name, w.path(name))
    new_manifest["format_version"] = FORMAT_VERSION


def upgrade_bundle(bundle_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Rewrite a format-1 bundle in format 2 (one weights file per precision), in place and
    atomically; the graphs compute exactly what they did, nothing is re-measured."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    if manifest.get("format_version") == FORMAT_VERSION:
        raise MofError(f"{bundle_dir} is already format {FORMAT_VERSION}")
    with BundleWriter(bundle_dir, force=True) as w:
        new_manifest = {k: v for k, v in manifest.items() if k != "files"}
        copy_bundle_files(w, bundle_dir, manifest, new_manifest, log=log)
        return w.commit(new_manifest)
