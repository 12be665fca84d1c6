"""Model: a loaded bundle and its onnxruntime sessions.

    model = Model.load("t6.mof")
    logits, state = model.prefill(ids)          # ids [B, T] (or [T]); state starts at zero
    logits, state = model.step(next_ids, state) # ids [B] or [B, C]; the caller's state is never mutated
    logits = model.exact_logits(ids)            # the reference: the network over the last W tokens
    logits, state = model.refill(ids)           # ids [B, K] read with the reference's semantics
                                                # from a zero state (the chunk graph)

Logits are float32 [B, V] for the last position of each row.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnxruntime as ort

from .bundle import check_unchanged, file_identity, read_manifest, read_verified, verify_bundle
from .config import ModelConfig
from .contract import (FP32, GRAPH_CHUNK, GRAPH_DECODE, GRAPH_STEP, INPUT_IDS, INT8, LOGITS, POSITION,
                       PRECISIONS, REFILL_INPUT, STATE_OUT, graph_io, native_key)
from .decoding import recommended_refill_every
from .errors import BundleError, MofError, OnnxruntimeWarning
from .manifest import Manifest
from .memory import release_after
from .onnx_refs import ProtoError, external_locations
from . import ort_compat
from .ort_compat import CPU, product_bug
from .ort_compat import check as check_onnxruntime_version
from .providers import resolve as resolve_providers
from .state import State, state_shapes
from .vocab import Vocabulary


def session_options(threads: Optional[int]) -> ort.SessionOptions:
    """Batch-1 latency settings, chosen by measurement (the figures: docs/bundle-format.md,
    "Embedding checklist"): all graph optimisations; intra-op threads = onnxruntime's default,
    one per core (fewer are slower); pool threads spin between calls, onnxruntime's default
    (without spinning a step is slower); no inter-op parallelism (each graph is one chain of
    ops); no CPU memory arena (below)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no arena: activation memory goes back after each call instead of staying at the largest
    # call's size, at the same speed
    so.enable_cpu_mem_arena = False
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 4          # fatal only: a graph that fails to load is reported in one line (Model.load)
    return so


class Model:
    def __init__(self, bundle_dir: Path, manifest: dict, sessions: dict[str, ort.InferenceSession],
                 vocab: Vocabulary, precision: str, config: Optional[ModelConfig] = None,
                 onnxruntime_note: Optional[str] = None):
        """Prefer ``Model.load``. ``config``: the manifest's, unless given (e.g. another W)."""
        self.bundle_dir = bundle_dir
        self.manifest = manifest if isinstance(manifest, Manifest) else Manifest(manifest, str(bundle_dir))
        self.config: ModelConfig = config or self.manifest.config
        self.vocab = vocab
        self.precision = precision                    # "fp32", "int8" or "int4"
        self.sessions = sessions
        self.onnxruntime_note = onnxruntime_note       # Model.load's one-line warning (None: none)
        self._state_fields = list(state_shapes(self.config))
        self._outputs = {n: [o.name for o in s.get_outputs()] for n, s in sessions.items()}
        self.self_check_result = None                  # the last self_check()'s PrecisionCheck
        self.kernels = "stock"                         # "stock", or "native (<isa>)": the fused graphs run
        self.kernels_note: Optional[str] = None        # Model.load's one line on that choice (None: nothing to say)

    @property
    def recommended_mode(self) -> str:
        """The decoding mode the export measured as better for this model."""
        return self.manifest.recommended_mode

    @property
    def recommended_refill_every(self) -> int:
        """Stream decoding's refill period R the export measured as faithful enough for this model
        (docs/bundle-format.md, "The refill rule"), at most this model's window W."""
        return recommended_refill_every(self.manifest, self.config)

    @property
    def form(self) -> str:
        """The prompt form the model was trained on."""
        return self.manifest.form

    # Loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, bundle_dir: str | os.PathLike, int8: bool = False, threads: Optional[int] = None,
             graphs: Optional[Sequence[str]] = None, window: Optional[int] = None,
             precision: Optional[str] = None, providers=None, check_onnxruntime: bool = True,
             self_check: bool = False, native: Optional[bool] = None) -> "Model":
        """Verify the bundle (format version, every file's sha256), then open its graphs
        (default: the ones decoding runs, ``Manifest.decoding_graphs``: the decode graph, or the
        step and chunk graphs on a provider that must not run its Ifs, ``providers.NO_BRANCHES``)
        in ``precision`` ("fp32", "int8" or "int4"; ``int8=True`` is ``precision="int8"``).

        ``window``: characters exact mode re-reads per token (and stream mode re-reads when the
        position table is full), instead of the bundle's; 1 to the position table's size.

        ``providers``: the execution provider(s) to run on, a name ("openvino",
        "DmlExecutionProvider", ...), a (name, options) pair or a list of them; the CPU provider
        always ends the list, and is the default. One missing from this onnxruntime is a MofError.

        This onnxruntime is checked against what the bundle records for ``precision``
        (docs/embedding.md): a version its kernels are known to compute differently on is a MofError;
        one not known to reproduce its figures, or another provider than the CPU, gives a one-line
        ``OnnxruntimeWarning`` (also kept as ``model.onnxruntime_note``). ``check_onnxruntime=False``
        skips both (to measure such a version).

        ``self_check``: run ``Model.self_check(required=True)`` before returning (``_check_at_load``:
        also, whatever the flag, where ort_compat.PRODUCT_BUGS knows of wrong products).

        ``native`` (docs/native.md): None runs the bundle's fused graphs for ``precision``
        (mof-quantize --native) when it has them, the providers are the CPU's alone and mof's native
        library loads here, else the stock graphs; False never; True requires them (MofError).
        ``model.kernels`` says which run, ``model.kernels_note`` why (one line)."""
        bundle_dir = Path(bundle_dir)
        precision = _precision(precision, int8)
        manifest = read_manifest(bundle_dir)
        chosen = resolve_providers(providers)
        graphs = manifest.decoding_graphs(precision, chosen.runs_branches) if graphs is None else tuple(graphs)
        files = _graph_files(bundle_dir, manifest, graphs, precision)
        so = session_options(threads)
        chosen.add_plugins(so)
        files, kernels, kernels_note = _pick_kernels(bundle_dir, manifest, files, precision, native, so, chosen)
        weights = manifest.weights_file(precision)
        # onnxruntime opens the graphs and their weights file itself (so the weights are read once,
        # straight into its own buffers): what it opens must be what is hashed
        opened = sorted(set(files.values()) | ({weights} if weights else set()))
        identities = {f: file_identity(bundle_dir / f) for f in opened if (bundle_dir / f).is_file()}
        # every file checked now; the graphs' sha256 on the very bytes whose external references
        # _open_session scans
        verify_bundle(bundle_dir, hashed_when_read=list(files.values()), manifest=manifest)
        manifest.form                                 # a bad form is an error now, not mid-chat
        config = _config(manifest, window)
        vocab = _vocabulary(bundle_dir, manifest, config)
        note = check_onnxruntime_version(manifest, precision, bundle_dir.name, chosen.names) \
            if check_onnxruntime else None
        if note:
            warnings.warn(note, OnnxruntimeWarning, stacklevel=2)
        sessions = {name: _open_session(bundle_dir, manifest, name, files[name], weights, so, chosen)
                    for name in graphs}
        check_unchanged(bundle_dir, identities)
        model = cls(bundle_dir, manifest, sessions, vocab, precision, config, note)
        model.kernels, model.kernels_note = kernels, kernels_note
        model._check_at_load(self_check, check_onnxruntime and chosen.names[0] == CPU)
        return model

    def _check_at_load(self, asked: bool, known_bugs: bool) -> None:
        """Model.load's self-check: when ``asked``, and (``known_bugs``: the CPU provider, versions
        checked) whenever this CPU and onnxruntime have a known product bug (ort_compat.PRODUCT_BUGS)."""
        bug = product_bug(self.precision) if known_bugs else None
        if asked or bug:
            self.self_check(required=True, because=bug.why if bug else "")

    def self_check(self, required: bool = False, because: str = ""):
        """Recompute the bundle's reference logits for this precision on this machine and compare
        (mof.runtime.selfcheck.PrecisionCheck; its ``line()`` is the verdict). ``required``: a
        verdict that fails, or a bundle without references, is a MofError (``because`` says why
        the check was required)."""
        from .selfcheck import check_model
        why = f" ({because} on this CPU under onnxruntime {ort_compat.current()})" if because else ""
        try:
            result = check_model(self)
        except MofError as e:
            if not why:
                raise
            raise type(e)(f"{e}{why}") from None
        self.self_check_result = result
        if required and not result.passed:
            raise MofError(f"{self.bundle_dir.name}: self-check failed{why}: {result.line()}; "
                           "its logits differ from the export's on this machine (mof-check shows each probe)")
        return result

    @property
    def providers(self) -> list[str]:
        """The execution providers the sessions run on, as onnxruntime reports them."""
        return next(iter(self.sessions.values())).get_providers() if self.sessions else []

    # State ------------------------------------------------------------------------------
    def initial_state(self, batch: int = 1) -> State:
        """The zero state for this model (State.zeros with its config)."""
        return State.zeros(self.config, batch)

    # Stream mode ------------------------------------------------------------------------
    def prefill(self, ids, state: Optional[State] = None) -> tuple[np.ndarray, State]:
        """Read ids [B, T] (or [T]) from ``state`` (default: zero) with the step graph; returns
        logits [B, V] after each row's last token."""
        ids = self._ids(ids)
        if state is None:
            state = self.initial_state(ids.shape[0])
        return self._run_step(ids, state)

    def step(self, ids, state: State) -> tuple[np.ndarray, State]:
        """One decoding step: ids [B] (one token per row) or [B, C]."""
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[:, None]
        return self._run_step(self._ids(ids), state)

    def _run_step(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        if not isinstance(state, State):
            raise MofError(f"state must be a mof State, got {type(state).__name__}")
        state.check(self.config)
        if state.batch != ids.shape[0]:
            raise MofError(f"ids have batch {ids.shape[0]}, state has batch {state.batch}")
        end = state.position + ids.shape[1]
        P = self.config.max_positions
        if int(end.max()) > P:
            raise MofError(f"position {int(end.max())} exceeds the position table ({P}); "
                           f"re-prefill the last {self.config.window} tokens from a fresh state")
        got = self._run(GRAPH_STEP, {INPUT_IDS: ids, POSITION: state.position, **state.feeds(self.config)})
        updates = {f: got[STATE_OUT + f] for f in self._state_fields}
        return got[LOGITS], state.with_updates(position=end.astype(np.int64), **updates)

    def refill(self, ids) -> tuple[np.ndarray, State]:
        """Read ids [B, K] (K <= W) from a zero state with the reference's semantics: the logits
        are exact mode's for those ids, the state (position K) is what ``step`` continues from."""
        ids = self._ids(ids)
        if ids.shape[1] > self.config.window:
            raise MofError(f"a refill reads at most W = {self.config.window} tokens, got {ids.shape[1]}")
        return self.chunk(ids)

    def chunk(self, ids) -> tuple[np.ndarray, State]:
        """The chunk graph on ids [B, T] for any T within the position table (past Wt too: the
        reference's crop): last logits and the state after them (position T)."""
        ids = self._ids(ids)
        if ids.shape[1] > self.config.max_positions:
            raise MofError(f"the chunk graph reads at most P = {self.config.max_positions} tokens, "
                           f"got {ids.shape[1]}")
        got = self._run(GRAPH_CHUNK, {INPUT_IDS: ids})
        B, T = ids.shape
        return got[LOGITS], State.zeros(self.config, B).with_updates(      # L = 0: no attention sums
            position=np.full(B, T, np.int64), **{f: got[STATE_OUT + f] for f in self._state_fields})

    # Exact mode -------------------------------------------------------------------------
    def exact_logits(self, ids) -> np.ndarray:
        """The reference's next-token logits: the network over the last W tokens of each row
        (the chunk graph's logits)."""
        ids = self._ids(ids)[:, -self.config.window:]
        return self._run(GRAPH_CHUNK, {INPUT_IDS: ids})[LOGITS]

    # Helpers ----------------------------------------------------------------------------
    def _run(self, graph: str, feeds: dict) -> dict[str, np.ndarray]:
        """Run the step or chunk graph (output name -> array): the decode graph when it is loaded
        (what decoding runs), with ``refill`` false, or true and the chunk graph's start — a zero
        state, position 0; else the graph's own session."""
        tokens = int(feeds[INPUT_IDS].size)
        if GRAPH_DECODE not in self.sessions:
            got = dict(zip(self._outputs.get(graph, ()), self._session(graph).run(None, feeds)))
        else:
            if graph == GRAPH_CHUNK:
                B = feeds[INPUT_IDS].shape[0]
                feeds = {**self.initial_state(B).feeds(self.config), POSITION: np.zeros(B, np.int64), **feeds}
            feeds[REFILL_INPUT] = np.array(graph == GRAPH_CHUNK)
            got = dict(zip(self._outputs[GRAPH_DECODE], self.sessions[GRAPH_DECODE].run(None, feeds)))
        release_after(tokens)                     # long reads: their activations back to the system
        return got

    def _session(self, name: str) -> ort.InferenceSession:
        try:
            return self.sessions[name]
        except KeyError:
            raise MofError(f"the {name!r} graph was not loaded (Model.load(..., graphs=...))") from None

    def _ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
            raise MofError(f"token ids must have shape [batch, n] with n >= 1, got {list(arr.shape)}")
        if arr.dtype.kind not in "iu":
            raise MofError(f"token ids must be integers, got {arr.dtype}")
        if arr.min() < 0 or arr.max() >= self.config.vocab_size:
            raise MofError(f"token ids must lie in [0, {self.config.vocab_size}), got "
                           f"[{arr.min()}, {arr.max()}]")
        return arr.astype(np.int32, copy=False)


def _precision(precision: Optional[str], int8: bool) -> str:
    """Model.load's ``precision`` (``int8=True``: int8; neither: fp32), checked."""
    precision = precision or (INT8 if int8 else FP32)
    if precision not in PRECISIONS:
        raise MofError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _graph_files(bundle_dir: Path, manifest: Manifest, graphs: Sequence[str], precision: str) -> dict[str, str]:
    """graph name -> its file in ``precision``; an error naming the fix for a graph the bundle lacks
    (mof-quantize for a precision it was never given)."""
    files = {name: manifest.graph_file(name, precision) for name in graphs}
    for name, file in files.items():
        if file is None:
            manifest.graph(name)                      # a graph the bundle lacks: its own error
            if precision != FP32:
                flag = "" if precision == INT8 else f" --{precision}"
                raise MofError(f"{bundle_dir} has no {precision} graphs; add them with: "
                               f"mof-quantize{flag} {bundle_dir}")
            raise BundleError(f"{bundle_dir}: graph {name!r} has no {precision} file")
    return files


def _pick_kernels(bundle_dir: Path, manifest: Manifest, files: dict[str, str], precision: str,
                  native: Optional[bool], so: ort.SessionOptions, chosen) -> tuple[dict[str, str], str, Optional[str]]:
    """(graph name -> file, kernels, note): the fused graphs of ``files`` with mof's native library
    registered on ``so`` when ``native`` allows and everything is there (Model.load), else ``files``
    unchanged and "stock"; ``native=True`` and anything missing is a MofError."""
    if native is False:
        return files, "stock", None
    fused = {n: manifest.graph_file(n, native_key(precision)) for n in files}
    why = None
    if not all(fused.values()):
        why = f"the bundle has no native {precision} graphs (mof-quantize --native {bundle_dir})"
    elif chosen.accelerated:
        why = f"the native ops run on the CPU provider alone, not beside {', '.join(chosen.accelerated)}"
    if why is not None:
        if native:
            raise MofError(f"native kernels required, but {why}")
        return files, "stock", None
    from .native import build, register
    got = _usable(build(), manifest)
    got = register(so, got) if got.path is not None else got
    if got.path is None:
        if native:
            raise MofError(f"native kernels required, but {got.note.removesuffix('; stock graphs')}")
        return files, "stock", got.note
    return fused, f"native ({got.isa})", got.note


def _usable(got, manifest: Manifest):
    """``got`` (mof.runtime.native.Native), or one without a path and saying why when the bundle's
    fused graphs need ops this library lacks, or QGru on a CPU without FMA."""
    from .native import NEEDS_FMA, OPS, Native
    if got.path is None:
        return got
    needs = (manifest.get("native") or {}).get("ops") or []
    missing = [op for op in needs if op not in OPS]
    if missing:
        return Native(None, "", f"native ops: the bundle's fused graphs need {', '.join(missing)}, which this "
                                "mof's library lacks; stock graphs")
    if not got.fma and any(op in NEEDS_FMA for op in needs):
        return Native(None, "", "native ops: this CPU has no FMA, where onnxruntime's sigmoid and tanh differ "
                                "from QGru's; stock graphs")
    return got


def _config(manifest: Manifest, window: Optional[int]) -> ModelConfig:
    """The manifest's ModelConfig, with ``window`` (1 to the position table's size) if given."""
    config = manifest.config
    if window is None:
        return config
    if not 1 <= window <= config.max_positions:
        raise MofError(f"window must be between 1 and the position table's size "
                       f"{config.max_positions}, got {window}")
    return dataclasses.replace(config, window=window)


def _vocabulary(bundle_dir: Path, manifest: Manifest, config: ModelConfig) -> Vocabulary:
    """The bundle's (verified) vocabulary, as large as the model's."""
    vocab = Vocabulary.from_json_file(bundle_dir / manifest.vocab_file)
    if vocab.size != config.vocab_size:
        raise BundleError(f"{bundle_dir}: vocabulary has {vocab.size} entries, model.vocab_size "
                          f"is {config.vocab_size}")
    return vocab


def _open_session(bundle_dir: Path, manifest: Manifest, name: str, file: str, weights: Optional[str],
                  so: ort.SessionOptions, chosen) -> ort.InferenceSession:
    """An onnxruntime session of graph ``name`` from ``file``, hashed as it is read and its external
    references checked; opened by path, so onnxruntime finds ``weights`` beside it (Model.load
    checks that no file changed meanwhile). A failure is one line: the file and onnxruntime's reason."""
    data = read_verified(bundle_dir, manifest, file)
    _check_external_data(data, weights, f"{bundle_dir}: {file}")
    del data
    try:
        sess = ort.InferenceSession(str(bundle_dir / file), sess_options=so, **chosen.session_args())
    except Exception as e:  # onnxruntime raises its own exception types
        on = f" on {', '.join(chosen.accelerated)}" if chosen.accelerated else ""
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        why = lines[0][:200] + (f" ... {lines[-1][:160]}" if len(lines) > 1 else "")
        raise BundleError(f"{bundle_dir}: cannot load {file}{on}: {why}") from None
    lost = [n for n in chosen.accelerated if n not in chosen.plugin and n not in sess.get_providers()]
    if lost:      # onnxruntime fell back to the CPU (e.g. the provider's libraries are missing)
        raise MofError(f"{bundle_dir}: onnxruntime could not start {', '.join(lost)} for {file}")
    _check_io(sess, manifest, name, f"{bundle_dir.name}/{file}")
    return sess


def check_environment(bundle_dir: str | os.PathLike, precision: str = FP32, providers=None) -> Optional[str]:
    """What Model.load would say of this onnxruntime and these providers for the bundle's
    ``precision``, without loading it: MofError for a missing provider or a refused version, else
    the warning line (None: none). For a server to fail before it starts."""
    bundle_dir = Path(bundle_dir)
    chosen = resolve_providers(providers)
    return check_onnxruntime_version(read_manifest(bundle_dir), precision, bundle_dir.name, chosen.names)


def _check_io(sess: ort.InferenceSession, manifest: Manifest, graph: str, where: str) -> None:
    """The graph's real inputs and outputs must be the ones mof.runtime.contract.graph_io declares
    for ``graph``, in order (``_fits``), and the manifest's entry must name the same ones."""
    io = graph_io(graph, manifest.config)
    for side, specs, args in (("inputs", io.inputs, sess.get_inputs()), ("outputs", io.outputs, sess.get_outputs())):
        bad = next((i for i, (a, t) in enumerate(zip(args, specs)) if not _fits(a, t)), min(len(args), len(specs)))
        if bad < max(len(args), len(specs)):
            got = f"{args[bad].name} {args[bad].type} {args[bad].shape}" if bad < len(args) else "missing"
            want = f"{specs[bad].name} {_ORT_TYPES[specs[bad].dtype]} {list(specs[bad].shape)}" if bad < len(specs) else "none"
            raise BundleError(f"{where}: {side[:-1]} {bad} is {got}; a {graph} graph's is {want}")
        named = [str(t.get("name")) for t in manifest.graph(graph).get(side) or [] if isinstance(t, dict)]
        if sorted(named) != sorted(t.name for t in specs):
            raise BundleError(f"{where}: the manifest names the {graph} graph's {side} {named}, "
                              f"not {[t.name for t in specs]}")


_ORT_TYPES = {"float32": "tensor(float)", "int32": "tensor(int32)", "int64": "tensor(int64)", "bool": "tensor(bool)"}


def _fits(arg, spec) -> bool:
    """An onnxruntime input/output (NodeArg) is the declared TensorSpec: its name, its dtype, its
    rank, the config's sizes; a symbolic dimension ("batch") may have any name but no fixed size."""
    shape = list(arg.shape or [])
    return (arg.name == spec.name and arg.type == _ORT_TYPES[spec.dtype] and len(shape) == len(spec.shape)
            and all(d == e if isinstance(e, int) else not isinstance(d, int) for d, e in zip(shape, spec.shape)))


def _check_external_data(graph: bytes, weights: Optional[str], where: str) -> None:
    """A graph may read external data from its precision's weights file only (onnxruntime would
    otherwise look for the file wherever the reference points)."""
    try:
        locations = set(external_locations(graph))
    except ProtoError as e:
        raise BundleError(f"{where} is not a valid ONNX graph ({e})") from None
    allowed = {weights} if weights else set()
    if locations - allowed:
        bad = sorted(map(str, locations - allowed))[0]
        raise BundleError(f"{where} refers to external data in {bad!r}; "
                          + (f"only {weights} may hold its weights" if weights else
                             "the manifest names no weights file for its precision"))
