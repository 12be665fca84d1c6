"""Add quantized graphs (int8 or int4) to a bundle: quantize, measure against fp32, gate, record."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from mof.measure.calibration import DEFAULT_TOKENS, load_calibration_text
from mof.measure.machine import measured_on
from mof.measure.report import quant_report, print_report
from mof.runtime.bundle import verify_bundle
from mof.runtime.contract import FP32, GRAPH_CHUNK, GRAPH_DECODE, GRAPH_STEP, INT4, INT8, QUANTIZED_FILES, QUANTIZED_GRAPHS
from mof.runtime.errors import MofError
from mof.runtime.manifest import model_config
from mof.runtime.model import Model, session_options
from mof.runtime.vocab import Vocabulary
from mof.writer.bundle_writer import BundleWriter
from mof.writer.graph_store import load_graph, store_precision
from mof.writer.manifest import add_precision, without_files
from mof.writer.upgrade import copy_bundle_files


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
    (graph name -> quantized bytes, the keyword arguments of mof.writer.manifest.add_precision:
    the record (scheme and accuracy report), the onnxruntime it was measured with and, when the
    manifest has a stream policy table, the table with this precision's ms per token)."""
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
    report = quant_report(models[FP32], models[precision], text, eval_tokens, source)
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
    from mof.runtime.ort_compat import record as onnxruntime_record     # the onnxruntime it was measured with
    additions = {"record": {"quantization": scheme, "accuracy": report},
                 "onnxruntime": onnxruntime_record(precision, scheme["name"], config=manifest["model"]),
                 "self_check": self_check_references(models, precision, manifest)}
    if manifest.get("stream", {}).get("policies"):      # the policy table gains this precision's ms/token
        from mof.measure.policies import add_timings, format_table
        additions["stream"] = add_timings(manifest["stream"], precision, models[precision], text, eval_tokens)
        for line in format_table(additions["stream"]).splitlines():
            log("      " + line)
    return blobs, additions


def self_check_references(models: dict, precision: str, manifest: dict) -> dict:
    """The manifest's self_check section with ``precision``'s reference logits added (and fp32's,
    for a bundle made before the self-check: its probes are made now)."""
    from mof.runtime.selfcheck import SECTION, make_reference
    section = manifest.get(SECTION)
    if not section or FP32 not in (section.get("precisions") or {}):
        section = make_reference(models[FP32], section, recorded_by="mof-quantize")
    return make_reference(models[precision], section, recorded_by="mof-quantize")


def quantize_bundle(bundle_dir: Path, *, precision: str = INT8, calibration_text: Optional[Path] = None,
                    eval_tokens: int = DEFAULT_TOKENS, allow_degraded: bool = False, force: bool = False,
                    log: Callable[[str], None] = print) -> Path:
    """Add ``precision`` graphs to an existing bundle, atomically (the bundle is replaced as a whole;
    docs/bundle-format.md)."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    if precision not in QUANTIZED_FILES:
        raise MofError(f"cannot quantize to {precision!r}")
    if any(manifest.graph_file(n, precision) for n in QUANTIZED_GRAPHS) and not force:
        raise MofError(f"{bundle_dir} already has {precision} graphs (use --force to redo them)")
    missing = [n for n in (GRAPH_STEP, GRAPH_CHUNK) if not manifest.graph_file(n, FP32)]
    if missing:
        raise MofError(f"{bundle_dir} has no {', '.join(missing)} graph; re-export it with this mof-export")
    model_config(manifest)
    vocab = Vocabulary.from_json_file(bundle_dir / manifest.vocab_file)
    fp32 = {n: load_graph(bundle_dir, manifest.graph_file(n, FP32)).SerializeToString()
            for n in QUANTIZED_GRAPHS if manifest.graph_file(n, FP32)}
    blobs, additions = make_quantized(precision, fp32, manifest, vocab, calibration_text=calibration_text,
                                      eval_tokens=eval_tokens, allow_degraded=allow_degraded, log=log)
    del fp32
    new_manifest = add_precision(without_files(manifest), precision, **additions)
    with BundleWriter(bundle_dir, force=True) as w:
        copy_bundle_files(w, bundle_dir, manifest, new_manifest, leave_out=precision)
        store_precision(w, new_manifest, precision, blobs, log)
        return w.commit(new_manifest)
