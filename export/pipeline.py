"""mof-export's work: checkpoint + vocabulary -> validated bundle directory."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from mof.runtime.config import ModelConfig
from mof.runtime.contract import (FP32, GRAPH_CHUNK, GRAPH_DECODE, GRAPH_FILES, GRAPH_FULL, GRAPH_STEP,
                                  GRAPH_WINDOW, INT8, QUANTIZED_GRAPHS, VOCAB_FILE)
from mof.runtime.errors import MofError
from mof.runtime.manifest import UNSAID_FORM
from mof.runtime.vocab import Vocabulary
from mof.writer.bundle_writer import BundleWriter, check_writable_target
from mof.writer.graph_store import store_precision
from mof.writer.manifest import add_precision, make_manifest, set_self_check, set_stream_report, set_validation

from .checkpoint import (EMBEDDING, check_data_complete, list_variables, locate_checkpoint, read_shape_facts,
                         resolve_config)
from .progress import Progress
from .vocabulary import find_vocab_file, load_vocabulary

# What export_checkpoint does, in order; with --int8, "quantize" runs before "write".
STAGES = ("locate", "build", "restore", "convert", "validate", "measure", "write")


@dataclass(frozen=True)
class ExportOptions:
    checkpoint: Path                  # prefix, folder with a 'checkpoint' file, or .index/.data file
    output: Optional[Path] = None     # bundle directory; default ./<name>.mof
    vocab: Optional[Path] = None      # default: the single vocab*.txt next to the checkpoint
    model_type: Optional[str] = None  # a T6 or T7 model type; None = sizes from shapes + flags
    num_heads: Optional[int] = None
    trans_window: Optional[int] = None
    window: Optional[int] = None
    force: bool = False
    atol: float = 1e-4
    seed: int = 0
    calibration_text: Optional[Path] = None   # stream-vs-exact measurement text; None = built-in
    eval_tokens: int = 256                     # characters of it to measure on
    full: bool = True                          # also write full.onnx (all positions; not used at run time)
    window_graph: bool = True                  # also write window.onnx (tf2onnx, last position; not
                                               # used at run time: exact mode runs chunk.onnx)
    int8: bool = False                         # also write int8 step/chunk graphs
    allow_degraded: bool = False               # keep int8 graphs that miss the accuracy gates
    form: str = UNSAID_FORM                    # the prompt form the model was trained on (manifest "form")


@dataclass(frozen=True)
class Located:
    prefix: Path
    variables: dict
    config: ModelConfig
    vocab: Vocabulary
    vocab_path: Path
    output: Path


def default_output(checkpoint: Path, prefix: Path) -> Path:
    name = checkpoint.resolve().name if checkpoint.is_dir() else prefix.name
    return Path.cwd() / f"{name}.mof"


@dataclass(frozen=True)
class Inputs:
    """What can be checked before TensorFlow loads: where the checkpoint and vocabulary are, and
    that the vocabulary parses and the output may be written."""
    prefix: Path
    vocab: Vocabulary
    vocab_path: Path
    vocab_warnings: tuple[str, ...]
    output: Path


def check_inputs(opts: ExportOptions) -> Inputs:
    """Bad paths, an existing output without --force and a vocabulary that does not parse fail
    here, in a fraction of a second (TensorFlow takes seconds to import)."""
    prefix = locate_checkpoint(opts.checkpoint)
    output = Path(opts.output) if opts.output else default_output(Path(opts.checkpoint), prefix)
    check_writable_target(output.absolute(), opts.force)
    vocab_path = Path(opts.vocab) if opts.vocab else find_vocab_file(prefix.parent)
    vocab, warnings = load_vocabulary(vocab_path)
    return Inputs(prefix, vocab, vocab_path, tuple(warnings), output)


def locate(opts: ExportOptions, progress: Progress, inputs: Optional[Inputs] = None) -> Located:
    inputs = inputs or check_inputs(opts)
    prefix, vocab, vocab_path = inputs.prefix, inputs.vocab, inputs.vocab_path
    for w in inputs.vocab_warnings:
        progress.log(f"      warning: {w}")
    variables = list_variables(prefix)
    facts = read_shape_facts(variables)
    config = resolve_config(facts, opts.model_type, num_heads=opts.num_heads,
                            trans_window=opts.trans_window, window=opts.window)
    if vocab.size != config.vocab_size:
        raise MofError(f"vocabulary {vocab_path.name} has {vocab.size} entries but the checkpoint's "
                       f"{EMBEDDING} has {config.vocab_size} rows")
    check_data_complete(prefix)
    progress.log(f"      checkpoint {prefix} ({len(variables)} variables)")
    progress.log(f"      vocabulary {vocab_path} ({vocab.size} entries)")
    progress.log("      model " + (opts.model_type or f"custom {config.family.upper()}") + ": " + ", ".join(
        f"{k}={v}" for k, v in config.to_dict().items()))
    return Located(prefix, variables, config, vocab, vocab_path, inputs.output)


def producer_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("mof", "tensorflow", "tf_keras", "tf2onnx", "onnx", "onnxruntime", "xiaothink", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def stage_count(int8: bool) -> int:
    """How many stages ``export_checkpoint`` runs (a Progress's total)."""
    return len(STAGES) + bool(int8)


def export_checkpoint(opts: ExportOptions, progress: Optional[Progress] = None,
                      inputs: Optional[Inputs] = None) -> Path:
    """Run every stage; returns the bundle directory. Raises MofError on bad input.
    ``inputs``: ``check_inputs(opts)`` if the caller already ran it (before importing TensorFlow)."""
    from mof.measure.calibration import load_calibration_text

    from .keras_model import build_keras_model, restore

    progress = progress or Progress(stage_count(opts.int8))
    with progress.stage("locate", "checkpoint, vocabulary and model sizes"):
        loc = locate(opts, progress, inputs)
        calibration = load_calibration_text(opts.calibration_text)
    cfg = loc.config
    with progress.stage("build", f"{cfg.family.upper()} network with xiaothink's code (tf_keras)"):
        model = build_keras_model(cfg, opts.model_type)
    with progress.stage("restore", f"weights from {loc.prefix.name}"):
        restore(model, loc.prefix, loc.variables)
    converted = [n for n, on in ((GRAPH_FULL, opts.full), (GRAPH_WINDOW, opts.window_graph)) if on]
    what = (f"{' and '.join(converted)} with tf2onnx (opset 17), " if converted else "") + "step, chunk and decode graphs"
    with progress.stage("convert", what):
        blobs = convert_graphs(opts, loc, model, progress.log)
    manifest = new_manifest(opts, loc, tuple(blobs))
    with progress.stage("validate", f"TensorFlow vs onnxruntime, atol {opts.atol:g}"):
        report, decode_model = validate_graphs(opts, loc, model, manifest, blobs, progress.log)
    source = opts.calibration_text.name if opts.calibration_text else "built-in"
    with progress.stage("measure", f"stream policies vs exact ({source} text), self-check references"):
        stream, references = measure_decoding(opts, decode_model, calibration, source, progress.log)
        del decode_model
    set_validation(manifest, report)
    set_stream_report(manifest, stream)
    set_self_check(manifest, references)
    int8_blobs = {}
    if opts.int8:
        from mof.quant.bundle_quant import make_quantized
        with progress.stage("quantize", "int8 step, chunk and decode graphs, accuracy vs fp32"):
            int8_blobs, additions = make_quantized(
                INT8, {n: blobs[n] for n in QUANTIZED_GRAPHS}, manifest, loc.vocab,
                calibration_text=opts.calibration_text, eval_tokens=opts.eval_tokens,
                allow_degraded=opts.allow_degraded, log=progress.log)
            manifest = add_precision(manifest, INT8, **additions)
    with progress.stage("write", f"bundle {loc.output}"):
        return write_bundle(opts, loc, manifest, blobs, int8_blobs, progress.log)


def convert_graphs(opts: ExportOptions, loc: Located, model, log: Callable[[str], None]) -> dict[str, bytes]:
    """The "convert" stage: graph name -> serialized graph (tf2onnx's full and window graphs when
    asked; step_graph's step, chunk and decode graphs)."""
    from .convert import to_onnx
    from .keras_model import window_function
    from .step_graph import build_chunk_graph, build_decode_graph, build_step_graph, checkpoint_getter

    cfg, blobs = loc.config, {}
    if opts.full:
        blobs[GRAPH_FULL] = to_onnx(model, ["batch", "seq", cfg.vocab_size], is_keras=True).SerializeToString()
    if opts.window_graph:
        blobs[GRAPH_WINDOW] = to_onnx(window_function(model), ["batch", cfg.vocab_size],
                                      is_keras=False).SerializeToString()
    get = checkpoint_getter(loc.prefix)
    for name, build in ((GRAPH_STEP, build_step_graph), (GRAPH_CHUNK, build_chunk_graph),
                        (GRAPH_DECODE, build_decode_graph)):
        blobs[name] = build(cfg, get).SerializeToString()
    for name, blob in blobs.items():
        log(f"      {GRAPH_FILES[name]}: {len(blob) / 1e6:.1f} MB")
    return blobs


def new_manifest(opts: ExportOptions, loc: Located, graphs: tuple[str, ...]) -> dict:
    """The bundle's manifest before validation (its report, stream table and self-check come later)."""
    vocab = loc.vocab
    return make_manifest(
        loc.config, model_type=opts.model_type,
        vocab={"size": vocab.size, "unknown_token": vocab.tokens[vocab.unknown_id],
               "unknown_id": vocab.unknown_id, "unknown_token_in_vocab": vocab.has_unknown_token,
               "duplicates": len(vocab.duplicates())},
        validation={}, producer=producer_versions(),
        source={"checkpoint": loc.prefix.name, "vocab": loc.vocab_path.name},
        graphs=graphs, form=opts.form)


def validate_graphs(opts: ExportOptions, loc: Located, model, manifest: dict, blobs: dict[str, bytes],
             log: Callable[[str], None]):
    """The "validate" stage: every graph against TensorFlow (tf2onnx's and the chunk graph), the
    step and chunk graphs against the numpy oracle, the decode graph against both. Returns (the
    parity report, the decode graph's fp32 Model, which the "measure" stage decodes with); a
    case over ``opts.atol`` is a MofError."""
    import onnxruntime as ort

    from mof.runtime.model import Model, session_options

    from . import oracle
    from .keras_model import traced_call
    from .validate import run_parity
    from .validate_step import check_chunk, check_decode, check_step

    cfg, seed = loc.config, opts.seed
    so = session_options(None)
    sessions = {name: ort.InferenceSession(blob, sess_options=so, providers=["CPUExecutionProvider"])
                for name, blob in blobs.items()}
    reference = traced_call(model)                   # model(ids), one trace for every shape
    tf_full = lambda ids: reference(ids).numpy()
    report = run_parity(tf_full, sessions, cfg, opts.atol, log, seed=seed)
    separate = {n: sess for n, sess in sessions.items() if n != GRAPH_DECODE}
    runtime_model = Model(loc.output, manifest, separate, loc.vocab, FP32)       # step and chunk
    weights = oracle.load_weights(loc.prefix, cfg)
    report["step"] = check_step(runtime_model, lambda ids: oracle.stream_forward(weights, cfg, ids),
                                tf_full, opts.atol, log, seed=seed + 1)
    report["chunk"] = check_chunk(runtime_model, lambda ids: oracle.window_state(weights, cfg, ids),
                                  opts.atol, log, seed=seed + 2)
    decode_model = Model(loc.output, manifest, {GRAPH_DECODE: sessions[GRAPH_DECODE]}, loc.vocab, FP32)
    report["decode"] = check_decode(runtime_model, decode_model, opts.atol, log, seed=seed + 3)
    check_passed(report, opts.atol, log)
    return report, decode_model


def check_passed(report: dict, atol: float, log: Callable[[str], None]) -> None:
    """Mark ``report`` passed, or raise MofError naming how many cases exceed ``atol``."""
    checked = report["cases"] + report["step"]["cases"] + report["chunk"]["cases"] + report["decode"]["cases"]
    failed = [c for c in checked if not c["ok"]]
    if failed:
        worst = max(c.get("max_rel_diff", c["max_abs_diff"]) for c in failed)
        raise MofError(f"parity check failed: {len(failed)} cases exceed atol {atol:g} "
                       f"(worst difference {worst:.3g}); no bundle written")
    report["passed"] = True
    log(f"      all {len(checked)} cases within atol {atol:g}")


def measure_decoding(opts: ExportOptions, decode_model, calibration, source: str, log: Callable[[str], None]):
    """The "measure" stage, on the validated fp32 decode graph: the stream-policy table (what
    decoding runs; its lines are logged unless --int8 logs its own table) and the self-check's
    reference logits. Returns (stream table, self-check section)."""
    from mof.measure.policies import policy_table
    from mof.runtime.selfcheck import make_reference

    stream = policy_table(decode_model, calibration, opts.eval_tokens, source, None if opts.int8 else log)
    return stream, make_reference(decode_model, recorded_by="mof-export")


def write_bundle(opts: ExportOptions, loc: Located, manifest: dict, blobs: dict[str, bytes],
          int8_blobs: dict[str, bytes], log: Callable[[str], None]) -> Path:
    """The "write" stage: the bundle directory, atomically (BundleWriter)."""
    with BundleWriter(loc.output, force=opts.force) as w:
        for name in set(blobs) - set(QUANTIZED_GRAPHS):     # full / window: analysis graphs with
            w.path(GRAPH_FILES[name]).write_bytes(blobs[name])  # their own weight layouts, embedded
        store_precision(w, manifest, FP32, {n: blobs[n] for n in QUANTIZED_GRAPHS}, log)
        if int8_blobs:
            store_precision(w, manifest, INT8, int8_blobs, log)
        w.path(VOCAB_FILE).write_text(loc.vocab.to_json(), encoding="utf-8")
        return w.commit(manifest)
