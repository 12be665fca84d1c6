"""mof against its peers on one model, one input, one machine: a 128-token exact pass.

    python benchmarks/peers.py [--workdir DIR] [--bundle DIR] [--rounds 10] [--threads 2]
                               [--contenders tf,mof-fp32,...] [--out DIR] [--note TEXT] [--force]

What is timed: the network over 128 random ids (seed 0) from a zero state, the last position's
logits — `mof.runtime.Model.exact_logits`, what exact decoding runs per token — in each of:

- ``mof-fp32``, ``mof-int8``, ``mof-int4``: ``Model.load(bundle, precision=..., threads=N,
  native=False)`` then ``model.exact_logits(ids)`` (the decode graph; int4 only when the bundle has
  int4 graphs); ``mof-int8-native``: the same with ``native=True``, the fused graphs of
  ``mof-quantize --native`` (docs/native.md; only when the bundle has them);
- ``litert-fp32``, ``litert-int8``: ai-edge-litert's ``Interpreter`` (its default XNNPACK delegate,
  ``num_threads=N``) on a .tflite converted from the Keras model by TensorFlow's TFLiteConverter with
  builtin ops only (``OpsSet.TFLITE_BUILTINS``); int8 is the converter's dynamic-range quantization
  (``Optimize.DEFAULT`` without a representative data set: int8 weights, activations quantized per row
  at run time). The converted function is ``mof.export.keras_model.window_function`` — xiaothink's
  layers and weights, the head applied to the last position only, as in mof's chunk graph — traced for
  ids [1, 128];
- ``openvino-f32``, ``openvino-default``: OpenVINO's CPU plugin on the bundle's fp32 ``chunk.onnx``
  (``INFERENCE_NUM_THREADS=N``, ``PERFORMANCE_HINT=LATENCY``), with ``INFERENCE_PRECISION_HINT=f32``,
  and with the plugin's default precision (bf16 on CPUs with AVX-512 BF16 or AMX; the precision it
  chose is recorded); ``openvino-nncf-int8``: the same graph after ``nncf.compress_weights`` (int8
  weights, f32 activations). ``--openvino-graph ONNX`` gives OpenVINO another fp32 graph of the same
  network (e.g. the chunk.onnx of a bundle exported by an earlier mof: a graph shaped for onnxruntime
  can be slower in OpenVINO — the window sums as CumSum's last row are, 164 vs 123 ms);
- ``tf``: TF Keras itself, one ``model(x)`` in a ``tf.function`` (all positions' logits, as xiaothink's
  generation loop computes them): the oracle every contender's max |Δlogit| is measured against.

**The one change LiteRT needs.** xiaothink 1.5.1's ``LinearMultiHeadAttention.call`` (and its ``_t7``
twin) computes ``kv = tf.einsum('b h i d, b h j v -> b h d v', key, value)``: the two sequence letters
differ, so it is Σ_i Σ_j k_i ⊗ v_j = (Σ_i k_i) ⊗ (Σ_j v_j), the outer product of the two sums
(docs/network.md: z = Σ_j k_j, u = Σ_j v_j). TFLite has no builtin op for an einsum that sums over two
different letters, so the conversion fails with "TF Select ops: Einsum" (and with ``SELECT_TF_OPS``
neither TensorFlow's bundled interpreter nor ai-edge-litert has a usable Flex delegate). While the
converter traces the model, ``outer_product_einsum()`` gives xiaothink's model module a ``tf`` whose
``einsum`` computes exactly that equation as ``reduce_sum(k, 2)[..., :, None] * reduce_sum(v, 2)[..., None, :]``
and passes every other equation to TensorFlow's: the same math and the same weights; nothing else in
xiaothink's code changes. tests/bench/test_peers.py checks the rewrite against xiaothink's layer.

How: the checkpoint and bundle come from ``--workdir`` (``DIR/ckpt`` and ``DIR/<model-type>.mof``, or
``--bundle``); a workdir without them gets them from benchmarks/headline.py's ``ensure_bundle``
(xiaothink's code, V = 16000, random weights; int8 and int4 graphs). An existing bundle is used as it
is. The .tflite files are converted once into ``DIR/peers/`` (``--reconvert`` redoes them). Every
contender then runs in its own worker process (so no runtime's thread pool or allocator disturbs
another; an untimed one on the first contender is started before them: the first worker started can
run a few % slow for a whole run), loads, warms up twice and saves its logits; then ``--rounds``
interleaved rounds (the order rotates each round) each time one pass per contender, after
``--settle`` seconds of quiet (onnxruntime's pool threads spin-wait after a run: without the pause
every contender timed right after an onnxruntime one lost the cores to its spinning threads). Reported: min and median ms over the rounds,
max |Δlogit| against ``tf``'s logits for the same ids, and the machine (CPU, its avx2 / avx512_vnni /
avx512_bf16 flags, cores, package versions), in ``benchmarks/results/<date>/peers.{json,md}``.

The peers come from the ``peers`` extra (``pip install -e '.[export,peers]'``); TensorFlow and xiaothink
(the ``export`` extra) are needed for ``tf`` and for converting the LiteRT files.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from mof.bench.rounds import SETTLE_S, rotated, settle_error
from mof.runtime.errors import MofError

HERE = Path(__file__).resolve().parent
PROG = "peers.py"
SCHEMA_VERSION = 1

# The equation xiaothink 1.5.1's LinearMultiHeadAttention(_t7).call computes kv with (spaces removed).
KV_EQUATION = "bhid,bhjv->bhdv"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")
PACKAGES = ("mof", "numpy", "onnxruntime", "tensorflow", "tf_keras", "xiaothink", "ai-edge-litert",
            "openvino", "nncf")


@dataclass(frozen=True)
class Contender:
    name: str                # the worker's name (--contenders, JSON key)
    runtime: str             # the table's first column
    precision: str           # fp32, int8, int4, f32, default, ...
    modules: tuple           # what must be importable (checked before anything runs)
    extra: str               # the pyproject extra that installs them
    what: str                # one line for the report: what exactly runs


TF_MODULES = ("tensorflow", "tf_keras", "xiaothink")
CONTENDERS = {c.name: c for c in (
    Contender("tf", "TF Keras", "fp32", TF_MODULES, "export",
              "one model(x) in a tf.function (all positions' logits): the oracle"),
    Contender("mof-fp32", "mof", "fp32", ("onnxruntime",), "runtime",
              "Model.load(bundle, precision='fp32').exact_logits(ids)"),
    Contender("mof-int8", "mof", "int8", ("onnxruntime",), "runtime",
              "Model.load(bundle, precision='int8', native=False).exact_logits(ids): the stock graphs"),
    Contender("mof-int8-native", "mof", "int8 native", ("onnxruntime",), "runtime",
              "Model.load(bundle, precision='int8', native=True).exact_logits(ids): the fused graphs "
              "(mof-quantize --native; when the bundle has them)"),
    Contender("mof-int4", "mof", "int4", ("onnxruntime",), "runtime",
              "Model.load(bundle, precision='int4').exact_logits(ids) (when the bundle has int4)"),
    Contender("litert-fp32", "LiteRT (XNNPACK)", "fp32", ("ai_edge_litert",) + TF_MODULES, "peers",
              "ai-edge-litert Interpreter, builtin ops, last position's logits"),
    Contender("litert-int8", "LiteRT (XNNPACK)", "int8", ("ai_edge_litert",) + TF_MODULES, "peers",
              "the same, TFLiteConverter dynamic-range int8 (int8 weights, per-row activations)"),
    Contender("openvino-f32", "OpenVINO (chunk.onnx)", "f32", ("openvino",), "peers",
              "OpenVINO CPU on the fp32 chunk.onnx, INFERENCE_PRECISION_HINT=f32"),
    Contender("openvino-default", "OpenVINO (chunk.onnx)", "default", ("openvino",), "peers",
              "the same with the CPU plugin's default inference precision"),
    Contender("openvino-nncf-int8", "OpenVINO (chunk.onnx)", "nncf int8", ("openvino", "nncf"), "peers",
              "nncf.compress_weights (int8 weights), f32 activations"),
)}
DEFAULT_CONTENDERS = tuple(CONTENDERS)


def log(msg: str) -> None:
    print(f"[{PROG}] {msg}", file=sys.stderr, flush=True)


class PeersError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


# --- the machine ---------------------------------------------------------------------------
def cpu_flags() -> dict:
    """Which of CPU_FLAGS /proc/cpuinfo lists (empty where there is no /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return {f: f in have for f in CPU_FLAGS}
    except OSError:
        pass
    return {}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict:
    from mof.measure.machine import cpu_name
    return {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "packages": package_versions()}


# --- the einsum rewrite (conversion time only) ----------------------------------------------
def outer_product_kv(tf, key, value):
    """einsum('bhid,bhjv->bhdv', key, value) as the outer product of Σ_i key_i and Σ_j value_j."""
    return tf.reduce_sum(key, axis=2)[..., :, None] * tf.reduce_sum(value, axis=2)[..., None, :]


class _OuterProductTF:
    """``tensorflow`` as xiaothink's model module sees it, except ``einsum`` with KV_EQUATION."""

    def __init__(self, tf):
        self._tf, self.rewrites = tf, 0

    def __getattr__(self, name):
        return getattr(self._tf, name)

    def einsum(self, equation, *operands, **kwargs):
        if equation.replace(" ", "") == KV_EQUATION and len(operands) == 2 and not kwargs:
            self.rewrites += 1
            return outer_product_kv(self._tf, *operands)
        return self._tf.einsum(equation, *operands, **kwargs)


@contextlib.contextmanager
def outer_product_einsum():
    """While active, xiaothink's attention layers compute kv as an outer product (traced code only:
    wrap the tracing). Yields the proxy; its ``rewrites`` counts the einsums replaced."""
    from mof.export._tf import import_tf, import_xiaothink_build_model
    tf = import_tf()
    bm = import_xiaothink_build_model()
    saved, proxy = bm.tf, _OuterProductTF(tf)
    bm.tf = proxy
    try:
        yield proxy
    finally:
        bm.tf = saved


# --- the Keras model and the LiteRT conversion ---------------------------------------------
def keras_model(ckpt: Path, bundle: Path):
    """xiaothink's model for the bundle's config, restored from the checkpoint."""
    from mof.export.checkpoint import list_variables, locate_checkpoint
    from mof.export.keras_model import build_keras_model, restore
    from mof.runtime.manifest import model_config
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    cfg = model_config(manifest)
    prefix = locate_checkpoint(ckpt)
    model = build_keras_model(cfg, manifest["model"].get("model_type"))
    restore(model, prefix, list_variables(prefix))
    return model


def convert_tflite(model, tokens: int, int8: bool) -> tuple[bytes, int]:
    """The .tflite of ``window_function(model)`` for ids [1, tokens], builtin ops only, with the
    einsum rewrite; int8: dynamic-range quantization. Returns (flatbuffer, einsums rewritten)."""
    from mof.export._tf import import_tf
    from mof.export.keras_model import window_function
    tf = import_tf()
    fn = window_function(model).python_function
    with outer_product_einsum() as proxy:
        spec = tf.TensorSpec([1, tokens], tf.int32, name="input_ids")
        concrete = tf.function(fn, input_signature=[spec]).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        blob = converter.convert()
    if proxy.rewrites == 0:
        raise PeersError("xiaothink's attention no longer calls einsum('bhid,bhjv->bhdv'): "
                         "the rewrite did not apply")
    return blob, proxy.rewrites


def tflite_path(peers_dir: Path, precision: str) -> Path:
    return peers_dir / f"litert.{precision}.tflite"


def prepare_litert(ckpt: Path, bundle: Path, peers_dir: Path, tokens: int, precisions: list,
                   reconvert: bool) -> None:
    """Convert the .tflite files the run needs (in this process: the caller runs it in its own)."""
    stamp = peers_dir / "litert.json"
    want = {"checkpoint": str(Path(ckpt).resolve()), "tokens": tokens,
            "tensorflow": package_versions()["tensorflow"]}
    old = json.loads(stamp.read_text()) if stamp.exists() else {}
    if old.get("inputs") != want:
        reconvert = True
    todo = [p for p in precisions if reconvert or not tflite_path(peers_dir, p).exists()]
    if not todo:
        return
    t0 = time.perf_counter()
    log("LiteRT: rebuilding the Keras model from the checkpoint")
    model = keras_model(ckpt, bundle)
    done = {} if reconvert else dict(old.get("files", {}))
    for p in todo:
        t = time.perf_counter()
        log(f"LiteRT: converting {p} (TFLiteConverter, builtin ops"
            f"{', dynamic-range int8' if p == 'int8' else ''}; 5-15 minutes at full size on 2 cores)")
        blob, n = convert_tflite(model, tokens, p == "int8")
        path = tflite_path(peers_dir, p)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)
        done[p] = {"bytes": len(blob), "einsums_rewritten": n, "convert_s": round(time.perf_counter() - t, 1)}
        stamp.write_text(json.dumps({"inputs": want, "files": done}, indent=2))   # after each file
        log(f"LiteRT: {path.name} {len(blob) / 2**20:.0f} MB in {time.perf_counter() - t:.0f} s")
    log(f"LiteRT: conversion took {time.perf_counter() - t0:.0f} s")


# --- workers: one process per contender ------------------------------------------------------
def runner(spec: dict) -> tuple[Callable[[], np.ndarray], dict]:
    """(run, info) for a contender: run() does one timed pass and returns the last position's
    logits [V]; info describes what was loaded."""
    name, threads = spec["name"], spec["threads"]
    ids = np.load(spec["ids"])                                   # int32 [1, T]
    bundle = Path(spec["bundle"])
    if name == "tf":
        from mof.export._tf import import_tf
        tf = import_tf()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        model = keras_model(Path(spec["ckpt"]), bundle)
        f = tf.function(lambda x: model(x, training=False))
        x = tf.constant(ids.astype(np.float32))                  # the Input layer is float32

        def run():
            return f(x)[0, -1].numpy()
        return run, {"intra_op_threads": threads, "inter_op_threads": 1}
    if name.startswith("mof-"):
        from mof.runtime import Model
        precision, _, kernels = name[4:].partition("-")
        model = Model.load(bundle, precision=precision, threads=threads, native=kernels == "native")
        return (lambda: model.exact_logits(ids)[0]), {"graphs": sorted(model.sessions), "kernels": model.kernels}
    if name.startswith("litert-"):
        from ai_edge_litert.interpreter import Interpreter
        interp = Interpreter(model_path=spec["tflite"], num_threads=threads)
        interp.allocate_tensors()
        (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
        # XNNPACK's partitions of the main graph: one DELEGATE node each, appended to the node list
        # (which keeps the nodes they replaced); more than one means ops it left to LiteRT in between
        ops = [o["op_name"] for o in interp._get_ops_details()]

        def run():
            interp.set_tensor(inp["index"], ids)
            interp.invoke()
            return interp.get_tensor(out["index"])[0]
        return run, {"xnnpack_partitions": ops.count("DELEGATE"),
                     "main_graph_ops": len(ops) - ops.count("DELEGATE"), "subgraphs": interp.num_subgraphs(),
                     "tflite_bytes": os.path.getsize(spec["tflite"])}
    if name.startswith("openvino-"):
        import openvino as ov
        core = ov.Core()
        model = core.read_model(str(bundle / spec["chunk_onnx"]))
        model.reshape({"input_ids": list(ids.shape)})
        info = {}
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if name == "openvino-nncf-int8":
            import nncf
            t = time.perf_counter()
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
            info["compress_s"] = round(time.perf_counter() - t, 1)
        if name != "openvino-default":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(model, "CPU", config)
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT")      # an ov.Type: f32, bf16, f16
        info["inference_precision"] = chosen.to_string() if hasattr(chosen, "to_string") else str(chosen)
        request = compiled.create_infer_request()
        logits = compiled.output("logits")

        def run():
            request.infer({"input_ids": ids})
            return request.get_tensor(logits).data[0].copy()
        return run, info
    raise PeersError(f"unknown contender {name!r}")


def worker_main(spec: dict) -> int:
    """A worker: load, warm up, save the logits, say ready; then one timed pass per 'time' line."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)               # the protocol keeps the real stdout;
    os.dup2(2, 1)                                                # anything a library prints goes to the log

    def say(**msg):
        proto.write(json.dumps(msg) + "\n")

    t = time.perf_counter()
    try:
        run, info = runner(spec)
        load_s = time.perf_counter() - t
        run()
        logits = run()
        np.save(spec["logits"], np.asarray(logits, np.float32))
    except Exception as e:                                       # reported by the parent, one line
        say(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400])
        raise
    say(ready=True, load_s=round(load_s, 2), info=info)
    for line in sys.stdin:
        if line.strip() == "time":
            t = time.perf_counter()
            run()
            say(ms=(time.perf_counter() - t) * 1e3)
        else:
            break
    return 0


class Worker:
    """The parent's handle on one worker process (stdin/stdout lines of JSON; stderr to a log)."""

    def __init__(self, spec: dict, log_path: Path, threads: int):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3",
                   TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
        self.name, self.log_path = spec["name"], log_path
        self._log = open(log_path, "w")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, env=env)

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise PeersError(f"worker {self.name} exited ({self.proc.returncode}); see {self.log_path}")
        msg = json.loads(line)
        if "error" in msg:
            raise PeersError(f"worker {self.name}: {msg['error']} (log: {self.log_path})")
        return msg

    def time_once(self) -> float:
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        return self.read()["ms"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- the report ------------------------------------------------------------------------------
def summarize(results: list, reference: Optional[np.ndarray]) -> None:
    """Adds min/median ms, and max |Δlogit| against ``reference``, to each result with times."""
    for r in results:
        if r.get("ms"):
            r["min_ms"], r["median_ms"] = min(r["ms"]), statistics.median(r["ms"])
        logits = r.pop("_logits", None)
        if logits is not None and reference is not None:
            r["max_abs_diff_vs_tf"] = float(np.max(np.abs(logits - reference)))


def _fmt_diff(x) -> str:
    if x is None:
        return "–"
    return "0" if x == 0 else f"{x:.1e}"


def render_md(report: dict) -> str:
    """peers.md: the machine, one row per contender (runtime × precision), how it was run."""
    m, pk = report["machine"], report["machine"]["packages"]
    flags = ", ".join(f for f, on in m["flags"].items() if on) or "none of " + ", ".join(CPU_FLAGS)
    versions = ", ".join(f"{k} {v}" for k, v in pk.items() if v)
    tf_median = next((r.get("median_ms") for r in report["results"] if r["name"] == "tf"), None)
    rows = ["| runtime | precision | median ms | min ms | × TF Keras (median) | max \\|Δlogit\\| vs TF Keras | notes |",
            "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        c = CONTENDERS[r["name"]]
        note = r.get("note", "")
        if "error" in r:
            rows.append(f"| {c.runtime} | {c.precision} | – | – | – | – | failed: {r['error']} |")
            continue
        speed = f"{tf_median / r['median_ms']:.2f}" if tf_median and r.get("median_ms") else "–"
        rows.append(f"| {c.runtime} | {c.precision} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {speed} | "
                    f"{_fmt_diff(r.get('max_abs_diff_vs_tf'))} | {note} |")
    cfg = report["model"]
    md = [f"# mof and its peers: a {report['tokens']}-token exact pass, {report['date']}", "",
          f"Model: {report['model_type']} (V = {cfg['vocab_size']}, random weights), "
          f"{report['tokens']} random ids (seed {report['seed']}), batch 1, the last position's logits; "
          f"{report['threads']} threads each; every runtime in its own process; {report['rounds']} interleaved "
          f"rounds of one pass each (the order rotates per round), min and median ms.", "",
          f"Machine: {m['cpu']} ({m['cores']} cores; {flags}), Python {m['python']}; {versions}.", "",
          *rows, "",
          "What runs: " + "; ".join(f"`{r['name']}` {CONTENDERS[r['name']].what}" for r in report["results"]) + ".",
          "",
          "LiteRT's conversion rewrites xiaothink's `einsum('bhid,bhjv->bhdv')` as the outer product of the two "
          "sums it computes (same math, same weights; `benchmarks/peers.py`'s docstring and docs/bench.md).",
          "",
          f"Reproduce: `{report['command']}`."]
    if report.get("note"):
        md += ["", report["note"]]
    return "\n".join(md) + "\n"


def print_table(report: dict) -> None:
    for r in report["results"]:
        if "error" in r:
            print(f"{r['name']:<20} failed: {r['error']}")
        else:
            print(f"{r['name']:<20} median {r['median_ms']:8.1f} ms  min {r['min_ms']:8.1f} ms  "
                  f"max|Δ| vs tf {_fmt_diff(r.get('max_abs_diff_vs_tf'))}")


# --- the run ---------------------------------------------------------------------------------
def check_extras(names: list) -> None:
    """One line naming the first missing module and the extra that installs it."""
    for n in names:
        c = CONTENDERS[n]
        for mod in c.modules:
            if importlib.util.find_spec(mod) is None:
                raise PeersError(f"{mod} is not installed (needed by {n}): pip install -e '.[{c.extra}]' "
                                 f"(or leave {n} out with --contenders)")


def parse_contenders(text: str) -> list:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in CONTENDERS]
    if bad:
        raise PeersError(f"unknown contender(s) {', '.join(bad)}; choose from {', '.join(CONTENDERS)}")
    if not names:
        raise PeersError("--contenders is empty")
    return names


def locate_inputs(args, need_ckpt: bool) -> tuple[Path, Path]:
    """The checkpoint and the bundle: made in the workdir (headline.py's ensure_bundle) when absent."""
    ckpt = args.workdir / "ckpt"
    bundle = args.bundle or args.workdir / f"{args.model_type}.mof"
    have_bundle = (bundle / "manifest.json").exists()
    if args.bundle and not have_bundle:
        raise PeersError(f"--bundle {bundle}: no manifest.json there")
    if have_bundle and need_ckpt and not (ckpt / "checkpoint").exists():
        raise PeersError(f"{bundle} exists but {ckpt} has no checkpoint: the TF and LiteRT contenders "
                         "need the checkpoint the bundle was exported from")
    if not have_bundle:
        log(f"making the checkpoint and bundle in {args.workdir} (xiaothink's code, V = 16000, random "
            "weights; mof-export and mof-quantize: several minutes at full size)")
        sys.path.insert(0, str(HERE))
        from headline import ensure_bundle
        ensure_bundle(args.workdir, args.model_type, no_window=True)
    return ckpt, bundle


def command_args(argv: list) -> list:
    """The run's arguments for the report's 'Reproduce' line, without --note TEXT and --force."""
    out, skip = [], False
    for a in argv:
        if skip or a == "--force" or a.startswith("--note="):
            skip = False
        elif a == "--note":
            skip = True
        else:
            out.append(a)
    return out


def run(args) -> int:
    names = parse_contenders(args.contenders)
    check_extras(names)
    if args.rounds < 1 or args.threads < 1 or args.tokens < 1:
        raise PeersError("--rounds, --threads and --tokens must be at least 1")
    if args.openvino_graph and not args.openvino_graph.is_file():
        raise PeersError(f"--openvino-graph {args.openvino_graph}: no such file")
    if settle_error(args.settle):
        raise PeersError(settle_error(args.settle))
    out_json, out_md = args.out / "peers.json", args.out / "peers.md"
    if not args.force and (out_json.exists() or out_md.exists()):
        raise PeersError(f"{out_json} exists; pass --force to replace it (or --out DIR)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    ckpt, bundle = locate_inputs(args, any(CONTENDERS[n].modules[-1] == "xiaothink" for n in names))
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    window = manifest["model"]["window"]
    if args.tokens > window:
        raise PeersError(f"--tokens {args.tokens} is more than the bundle's window ({window})")
    graphs = manifest["graphs"]
    if "mof-int4" in names and "int4" not in (graphs.get("decode") or graphs.get("chunk") or {}):
        log(f"{bundle.name} has no int4 graphs: mof-int4 left out")
        names.remove("mof-int4")
    if "mof-int8-native" in names and "int8_native" not in (graphs.get("decode") or graphs.get("chunk") or {}):
        log(f"{bundle.name} has no native int8 graphs (mof-quantize --native): mof-int8-native left out")
        names.remove("mof-int8-native")
    if any(n.startswith("openvino-") for n in names) and "chunk" not in graphs and not args.openvino_graph:
        raise PeersError(f"{bundle} has no chunk graph for OpenVINO (re-export it with this mof)")
    if "tf" not in names:
        log("tf is not among the contenders: no max |Δlogit| (it is the oracle)")
    peers_dir = args.workdir / "peers"
    (peers_dir / "logs").mkdir(parents=True, exist_ok=True)
    ids = np.random.default_rng(args.seed).integers(0, manifest["model"]["vocab_size"],
                                                    (1, args.tokens)).astype(np.int32)
    np.save(peers_dir / "ids.npy", ids)

    litert = [n.split("-", 1)[1] for n in names if n.startswith("litert-")]
    if litert:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--prepare-litert",
               json.dumps({"ckpt": str(ckpt), "bundle": str(bundle), "peers_dir": str(peers_dir),
                           "tokens": args.tokens, "precisions": litert, "reconvert": args.reconvert})]
        if subprocess.run(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).returncode != 0:
            raise PeersError("the LiteRT conversion failed (its error is above)")

    openvino_graph = (str(args.openvino_graph.resolve()) if args.openvino_graph     # absolute: bundle / it is it
                      else graphs.get("chunk", {}).get("fp32"))

    def spec(n: str, logits: str) -> dict:
        s = {"name": n, "threads": args.threads, "ids": str(peers_dir / "ids.npy"),
             "bundle": str(bundle), "ckpt": str(ckpt), "chunk_onnx": openvino_graph,
             "logits": str(peers_dir / logits)}
        if n.startswith("litert-"):
            s["tflite"] = str(tflite_path(peers_dir, n.split("-", 1)[1]))
        return s

    results, workers, spares = [], [], []
    try:
        # an untimed first worker (the first contender again): the first worker process started
        # ran 3-6 % slow for a whole run in benchmarks/window_passes.py (AVX2-only AMD EPYC, cause
        # not found), whatever its place in the rounds; this one takes that place
        log(f"loading {names[0]} once more, untimed (the first worker started can run slow)")
        spares.append(Worker(spec(names[0], "logits.spare.npy"), peers_dir / "logs" / "spare.log", args.threads))
        try:
            spares[0].read()
        except PeersError as e:
            log(f"the untimed worker failed ({e}); going on without it")
        for n in names:
            log(f"loading {n} in its own process")
            w = Worker(spec(n, f"logits.{n}.npy"), peers_dir / "logs" / f"{n}.log", args.threads)
            r = {"name": n, "runtime": CONTENDERS[n].runtime, "precision": CONTENDERS[n].precision, "ms": []}
            try:
                ready = w.read()
            except PeersError as e:
                w.close()
                log(f"{n} failed: {e}")
                results.append({**r, "error": str(e)})
                continue
            r.update(load_s=ready["load_s"], info=ready["info"])
            if n.startswith("openvino-"):
                r["note"] = f"inference precision {ready['info']['inference_precision']}"
            if n.startswith("litert-"):
                i = ready["info"]
                r["note"] = (f"XNNPACK: {i['xnnpack_partitions']} partitions of the main graph's "
                             f"{i['main_graph_ops']} ops")
            log(f"{n}: loaded in {ready['load_s']:.1f} s")
            workers.append((w, r))
            results.append(r)
        for k in range(args.rounds):
            for w, r in rotated(workers, k):
                time.sleep(args.settle)             # the last runtime's pool threads stop spinning
                r["ms"].append(w.time_once())
            log(f"round {k + 1}/{args.rounds}: " + ", ".join(f"{r['name']} {r['ms'][-1]:.1f}" for _, r in workers))
    finally:
        for w in [*spares, *(w for w, _ in workers)]:
            w.close()

    for r in results:
        if "error" not in r:
            r["_logits"] = np.load(peers_dir / f"logits.{r['name']}.npy")
    ref = next((r["_logits"] for r in results if r["name"] == "tf" and "error" not in r), None)
    summarize(results, ref)
    report = {"schema_version": SCHEMA_VERSION, "date": time.strftime("%Y-%m-%d"),
              "model_type": manifest["model"].get("model_type") or "custom", "model": manifest["model"],
              "bundle": str(bundle),
              "tokens": args.tokens, "seed": args.seed, "threads": args.threads, "rounds": args.rounds,
              "machine": machine_info(), "results": results,
              "command": " ".join(["python benchmarks/peers.py", *command_args(args.argv)])}
    if litert and (peers_dir / "litert.json").exists():
        report["litert_conversion"] = json.loads((peers_dir / "litert.json").read_text())["files"]
    if args.note:
        report["note"] = args.note
    args.out.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    out_md.write_text(render_md(report), encoding="utf-8")
    print_table(report)
    log(f"wrote {out_json} and {out_md.name}")
    return 1 if any("error" in r for r in results) else 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Time a 128-token exact pass (the last position's logits) of one full-size model in mof "
                    "(fp32, int8, int4), LiteRT (fp32, dynamic-range int8), OpenVINO (f32, its default "
                    "precision, nncf int8) and TF Keras, each in its own process, in interleaved rounds; "
                    "each contender's max |Δlogit| against TF Keras. Needs the export and peers extras: "
                    "pip install -e '.[export,peers]'.",
        epilog="contenders: " + "; ".join(f"{c.name}: {c.what}" for c in CONTENDERS.values()))
    ap.add_argument("--workdir", type=Path, metavar="DIR", default=Path("/tmp/mof-headline"),
                    help="holds ckpt/ and <model-type>.mof (made there if absent, as benchmarks/headline.py "
                         "does) and peers/ (the .tflite files, logs); default /tmp/mof-headline, headline.py's")
    ap.add_argument("--bundle", type=Path, metavar="BUNDLE", help="the bundle, if not DIR/<model-type>.mof (used as it is)")
    ap.add_argument("--model-type", metavar="TYPE", default="t6_beta_dense",
                    help="xiaothink model type of a bundle made here (default t6_beta_dense)")
    ap.add_argument("--openvino-graph", type=Path, metavar="ONNX",
                    help="the fp32 ONNX graph OpenVINO runs (default: the bundle's chunk.onnx); the same "
                         "network as the bundle, e.g. an earlier mof's chunk.onnx of the same checkpoint")
    ap.add_argument("--rounds", type=int, metavar="N", default=10,
                    help="interleaved rounds, one pass per contender each (default 10)")
    ap.add_argument("--settle", type=float, metavar="S", default=SETTLE_S,
                    help=f"seconds of quiet before each timed pass (default {SETTLE_S:g}): onnxruntime's pool "
                         "threads spin-wait after a run and would take the cores from the next "
                         "contender (measured: mof int8 153 ms right after mof fp32, 110 ms alone)")
    ap.add_argument("--threads", type=int, metavar="N", default=2, help="threads per runtime (default 2)")
    ap.add_argument("--tokens", type=int, metavar="N", default=128,
                    help="ids per pass, at most the bundle's window (default 128)")
    ap.add_argument("--seed", type=int, metavar="N", default=0, help="seed of the random ids (default 0)")
    ap.add_argument("--contenders", metavar="NAMES", default=",".join(DEFAULT_CONTENDERS),
                    help=f"comma-separated, from: {', '.join(CONTENDERS)} (default all; tf is the oracle)")
    ap.add_argument("--reconvert", action="store_true", help="convert the .tflite files again")
    ap.add_argument("--out", type=Path, metavar="DIR", default=HERE / "results" / time.strftime("%Y-%m-%d"),
                    help="where peers.json and peers.md go (default benchmarks/results/<today>)")
    ap.add_argument("--force", action="store_true", help="replace an existing peers.json/peers.md")
    ap.add_argument("--note", metavar="TEXT", help="a sentence on the run's conditions, kept in the JSON and the .md")
    ap.add_argument("--render", type=Path, metavar="JSON", help="only re-render peers.md from a saved peers.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prepare-litert", help=argparse.SUPPRESS)
    return ap


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))
    try:
        if args.prepare_litert:
            p = json.loads(args.prepare_litert)
            prepare_litert(Path(p["ckpt"]), Path(p["bundle"]), Path(p["peers_dir"]), p["tokens"],
                           p["precisions"], p["reconvert"])
            return 0
        if args.render:
            report = json.loads(args.render.read_text(encoding="utf-8"))
            (args.render.parent / (args.render.stem + ".md")).write_text(render_md(report), encoding="utf-8")
            return 0
        args.argv = argv
        return run(args)
    except (PeersError, MofError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
