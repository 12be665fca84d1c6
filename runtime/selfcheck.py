"""A bundle that checks itself (docs/bundle-format.md, "self_check"): the export and mof-quantize
record, per precision, the logits of a few fixed inputs that reach every kernel path decoding runs
(a full window pass, a short one, a batch of window passes, a stream prefill, a step after a refill
and a batch of such steps); ``check_model`` recomputes them on this machine, with this onnxruntime
and provider, and compares.

    result = check_model(model)            # PrecisionCheck: per probe max |Δlogit| and top-1
    print(result.line())                   # "int8  ✓ max |Δlogit| 0 (atol 1e-04), top-1 12/12"

Each row keeps its TOP largest logits, the logits at SAMPLE ids spread over the vocabulary, and
two sums over the whole row (logsumexp and mean: neither moves by more than the largest change of
any logit, so a change anywhere in the row shows). The verdict is against the tolerances recorded
with the references: ``Tolerance.same_kind`` on a CPU whose kernel-selecting flags are the
recorded ones, ``other_kind`` elsewhere (int4's kernels differ by instruction set).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .contract import FP32, INT4, INT8
from .errors import BundleError, MofError
from .machine import cpu_features, describe_cpu, same_cpu_kind

SECTION = "self_check"      # manifest key
VERSION = 1                 # manifest[SECTION]["version"]
SEED = 20261207             # the probes' token ids (stored in the manifest: the seed only makes them)
TOP = 8                     # each row keeps its TOP largest logits (ids and values)
SAMPLE = 32                 # and its logits at SAMPLE ids spread over the vocabulary, the same ids for every row
BATCH = 4                   # rows of the batched probes
CALLS = ("exact", "prefill", "refill-step")     # what a probe runs (Probe.run)


@dataclass(frozen=True)
class Tolerance:
    same_kind: float                   # max |Δlogit| on a CPU of the reference's kind
    other_kind: float                  # on any other CPU
    kind_flags: Optional[tuple] = None # what makes a kind besides the architecture: these flags of
                                       # runtime/machine.py's (None: all of them)


# What a bundle promises of each precision (docs/platforms.md has the measurements):
# - fp32: within the export's 1e-4 everywhere measured (x86 and ARM64, every supported onnxruntime);
# - int8: bit for bit on every x86 CPU with AVX2 (the 7-bit products are exact there, AVX2 or VNNI);
#   elsewhere (ARM64, x86 without AVX2) fp32 ops round a few ulps otherwise (x86: LayerNormalization),
#   which moves some per-row uint8 activations by a step that deep models compound;
# - int4: MatMulNBits' kernels differ by instruction set, so only its own CPU kind holds it to 1e-4.
TOLERANCES = {FP32: Tolerance(1e-4, 1e-4, ()),
              INT8: Tolerance(1e-4, 0.25, ("avx2",)),
              INT4: Tolerance(1e-4, 0.15)}


@dataclass(frozen=True)
class Probe:
    name: str                          # what it runs, e.g. "window 4x64"
    call: str                          # "exact", "prefill" or "refill-step"
    ids: np.ndarray                    # int32 [B, T]
    next: Optional[np.ndarray] = None  # int32 [B]: refill-step's token after the refill

    def run(self, model) -> np.ndarray:
        """float32 [B, V]: the logits this probe reads from ``model`` (a mof.runtime.Model)."""
        if self.call == "exact":
            return model.exact_logits(self.ids)
        if self.call == "prefill":
            return model.prefill(self.ids)[0]
        _, state = model.refill(self.ids)
        return model.step(self.next, state)[0]

    def to_dict(self) -> dict:
        d = {"name": self.name, "call": self.call, "ids": encode(self.ids)}
        return d if self.next is None else {**d, "next": encode(self.next)}


def make_probes(config, seed: int = SEED) -> list[Probe]:
    """The fixed inputs for a model of ``config``: every graph path decoding runs, at batch 1 and
    at BATCH rows (products with T x B rows take other kernel paths than one row)."""
    rng = np.random.default_rng(seed)
    W, V, P = config.window, config.vocab_size, config.max_positions
    ids = lambda b, t: rng.integers(1, V, size=(b, t)).astype(np.int32)
    short, prefill, half = min(5, W), min(17, P), max(1, W // 2)
    return [Probe(f"window 1x{W}", "exact", ids(1, W)),
            Probe(f"window 1x{short}", "exact", ids(1, short)),
            Probe(f"window {BATCH}x{W}", "exact", ids(BATCH, W)),
            Probe(f"prefill 1x{prefill}", "prefill", ids(1, prefill)),
            Probe(f"step 1 after {W - 1}", "refill-step", ids(1, max(1, W - 1)), ids(1, 1)[:, 0]),
            Probe(f"step {BATCH} after {half}", "refill-step", ids(BATCH, half), ids(BATCH, 1)[:, 0])]


def sample_ids(vocab_size: int) -> list[int]:
    """SAMPLE ids spread over the vocabulary with varied residues (a kernel that is wrong in some
    output columns only, e.g. N mod 32 in a range, shows in some of them)."""
    return sorted({(i * 7919 + 13) % vocab_size for i in range(SAMPLE)})


# The manifest's arrays: {"dtype", "shape", "base64"} of the little-endian bytes (JSON, no pickle).
_DTYPES = {"float32": "<f4", "int32": "<i4"}


def encode(a: np.ndarray) -> dict:
    kind = "int32" if a.dtype.kind in "iu" else "float32"
    data = np.ascontiguousarray(a, dtype=_DTYPES[kind]).tobytes()
    return {"dtype": kind, "shape": list(a.shape), "base64": base64.b64encode(data).decode("ascii")}


def decode(d, where: str) -> np.ndarray:
    try:
        shape = [int(n) for n in d["shape"]]
        a = np.frombuffer(base64.b64decode(d["base64"], validate=True), dtype=_DTYPES[d["dtype"]])
        return a.reshape(shape)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{where}: a malformed array in the manifest's {SECTION} ({e})") from None


def row_sums(logits: np.ndarray, sample: Sequence[int]) -> dict[str, np.ndarray]:
    """What a check compares of logits [R, V] beside the recorded top ids: the sampled logits and
    the two sums over each whole row (logsumexp, mean)."""
    wide = logits.astype(np.float64)
    m = wide.max(axis=1, keepdims=True)
    return {"sample_logits": logits[:, list(sample)],
            "logsumexp": (m[:, 0] + np.log(np.exp(wide - m).sum(axis=1))).astype(np.float32),
            "mean": wide.mean(axis=1).astype(np.float32)}


def row_summary(logits: np.ndarray, sample: Sequence[int]) -> dict[str, np.ndarray]:
    """What a reference keeps of logits [R, V]: top ids and values, and ``row_sums``."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :TOP].astype(np.int32)
    return {"top_ids": top, "top_logits": np.take_along_axis(logits, top, axis=1), **row_sums(logits, sample)}


def all_logits(model, probes: Sequence[Probe]) -> list[np.ndarray]:
    return [np.asarray(p.run(model), np.float32) for p in probes]


def machine(model) -> dict:
    """What a reference or a verdict was computed on."""
    import onnxruntime as ort
    return {"cpu": cpu_features(), "onnxruntime": ort.__version__, "providers": list(model.providers)}


def make_reference(model, section: Optional[dict] = None, recorded_by: str = "mof-export") -> dict:
    """The manifest's self_check section with ``model``'s precision recorded (computed now, with
    this machine, on the graphs ``model`` runs); ``section``: the bundle's current one (its probes
    are kept), or None to make the probes."""
    if section:
        probes, sample = read_probes(section, str(model.bundle_dir)), section["sample_ids"]
    else:
        probes, sample = make_probes(model.config), sample_ids(model.config.vocab_size)
    logits = np.concatenate(all_logits(model, probes))
    tol = TOLERANCES[model.precision]
    record = {k: encode(v) for k, v in row_summary(logits, sample).items()}
    record.update(atol=tol.same_kind, atol_other_cpu=tol.other_kind,
                  cpu_kind_flags=None if tol.kind_flags is None else list(tol.kind_flags),
                  recorded_by=recorded_by, measured_on=machine(model))
    precisions = dict((section or {}).get("precisions") or {})
    precisions[model.precision] = record
    return {"version": VERSION, "probes": [p.to_dict() for p in probes], "sample_ids": list(sample),
            "precisions": precisions}


def read_probes(section: dict, where: str) -> list[Probe]:
    try:
        probes = [Probe(str(p["name"]), str(p["call"]), decode(p["ids"], where),
                        None if p.get("next") is None else decode(p["next"], where))
                  for p in section["probes"]]
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{where}: the manifest's {SECTION} probes are malformed ({e})") from None
    for p in probes:
        if p.call not in CALLS or p.ids.ndim != 2 or (p.call == "refill-step") != (p.next is not None):
            raise BundleError(f"{where}: the manifest's {SECTION} probe {p.name!r} is malformed")
    return probes


@dataclass(frozen=True)
class ProbeResult:
    name: str
    rows: int
    max_abs_diff: float      # over the kept logits and the two row sums
    top1_agree: int          # rows whose largest logit is the recorded one (or tied with it within 2 atol)

    def passes(self, atol: float) -> bool:
        return self.max_abs_diff <= atol and self.top1_agree == self.rows


@dataclass(frozen=True)
class PrecisionCheck:
    precision: str
    probes: tuple[ProbeResult, ...]
    atol: float              # the tolerance that applies on this machine
    same_cpu_kind: bool      # this CPU is of the reference's kind (for this precision's kernels)
    recorded_on: dict        # the reference's machine
    checked_on: dict         # this one

    @property
    def max_abs_diff(self) -> float:
        return max(p.max_abs_diff for p in self.probes)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.probes)

    @property
    def top1_agree(self) -> int:
        return sum(p.top1_agree for p in self.probes)

    @property
    def passed(self) -> bool:
        return all(p.passes(self.atol) for p in self.probes)

    def line(self) -> str:
        mark = "✓" if self.passed else "✗"
        where = "" if self.same_cpu_kind else ", another CPU kind than the reference's"
        return (f"{self.precision:5s} {mark} max |Δlogit| {self.max_abs_diff:.2g} (atol {self.atol:g}{where}), "
                f"top-1 {self.top1_agree}/{self.rows}")

    def to_dict(self) -> dict:
        return {"precision": self.precision, "passed": self.passed, "max_abs_diff": self.max_abs_diff,
                "atol": self.atol, "top1_agree": self.top1_agree, "rows": self.rows,
                "same_cpu_kind": self.same_cpu_kind, "recorded_on": self.recorded_on,
                "checked_on": self.checked_on,
                "probes": [dict(vars(p)) for p in self.probes]}


def reference_of(manifest, precision: str, where: str) -> tuple[dict, dict]:
    """(the self_check section, ``precision``'s record); MofError with the way to add them if absent."""
    section = manifest.get(SECTION)
    rec = ((section or {}).get("precisions") or {}).get(precision) if isinstance(section, dict) else None
    if not isinstance(rec, dict):
        raise MofError(f"{where} records no reference logits for {precision} (made before mof's "
                       f"self-check); add them on the machine that exported it: mof-check --record {where}")
    if section.get("version") != VERSION:
        raise BundleError(f"{where}: self_check version {section.get('version')!r} is not {VERSION}; "
                          "this mof cannot read it")
    return section, rec


def check_model(model) -> PrecisionCheck:
    """Recompute the bundle's references for ``model``'s precision on this machine and compare."""
    where = str(model.bundle_dir)
    section, rec = reference_of(model.manifest, model.precision, where)
    if model.config != model.manifest.config:       # another window (Model.load(window=...)): the
        model = type(model)(model.bundle_dir, model.manifest, model.sessions, model.vocab,   # bundle's
                            model.precision)
    probes = read_probes(section, where)
    want = _reference_arrays(rec, section, sum(p.ids.shape[0] for p in probes), model.config.vocab_size, where)
    here = machine(model)
    kind = rec.get("cpu_kind_flags")
    same = same_cpu_kind(here["cpu"], (rec.get("measured_on") or {}).get("cpu") or {},
                         kind if isinstance(kind, list) else None)
    atol = float(rec["atol"] if same else rec.get("atol_other_cpu", rec["atol"]))
    results, start = [], 0
    for probe, logits in zip(probes, all_logits(model, probes)):
        rows = slice(start, start + logits.shape[0])
        start += logits.shape[0]
        results.append(_compare(probe.name, logits, {k: v[rows] for k, v in want.items()},
                                section["sample_ids"], atol))
    return PrecisionCheck(model.precision, tuple(results), atol, same, rec.get("measured_on") or {}, here)


def _reference_arrays(rec: dict, section: dict, rows: int, vocab_size: int, where: str) -> dict:
    """A precision's recorded arrays, checked against the probes' rows and the vocabulary."""
    want = {k: decode(rec.get(k), where) for k in ("top_ids", "top_logits", "sample_logits", "logsumexp", "mean")}
    sample = section.get("sample_ids")
    ok = (isinstance(sample, list) and all(isinstance(i, int) and 0 <= i < vocab_size for i in sample)
          and all(a.shape[:1] == (rows,) for a in want.values())
          and want["top_ids"].shape == want["top_logits"].shape and want["top_ids"].ndim == 2
          and want["sample_logits"].shape == (rows, len(sample))
          and bool(((want["top_ids"] >= 0) & (want["top_ids"] < vocab_size)).all()))
    if not ok or not isinstance(rec.get("atol"), (int, float)):
        raise BundleError(f"{where}: the manifest's {SECTION} references do not fit its {rows} probe rows "
                          f"and {vocab_size}-token vocabulary")
    return want


def _compare(name: str, logits: np.ndarray, want: dict, sample: Sequence[int], atol: float) -> ProbeResult:
    got = row_sums(logits, sample)
    diffs = [np.abs(np.take_along_axis(logits, want["top_ids"].astype(np.int64), axis=1) - want["top_logits"]),
             np.abs(got["sample_logits"] - want["sample_logits"]),
             np.abs(got["logsumexp"] - want["logsumexp"]), np.abs(got["mean"] - want["mean"])]
    worst = float(np.max(np.concatenate([d.ravel() for d in diffs])))       # NaN stays NaN
    best = logits.argmax(axis=1)
    tied = want["top_logits"] >= want["top_logits"][:, :1] - 2 * atol          # [R, TOP]
    agree = sum(int(b in set(ids[t].tolist())) for b, ids, t in zip(best, want["top_ids"], tied))
    return ProbeResult(name, logits.shape[0], worst if not np.isnan(worst) else float("inf"), agree)


def describe(result: PrecisionCheck) -> list[str]:
    """The per-probe lines under a precision's verdict."""
    return [f"      {'✓' if p.passes(result.atol) else '✗'} "
            f"{p.name:22s} max |Δlogit| {p.max_abs_diff:.2g}, top-1 {p.top1_agree}/{p.rows}"
            for p in result.probes]


def describe_reference(rec_on: dict) -> str:
    return (f"{describe_cpu(rec_on.get('cpu') or {})}, onnxruntime {rec_on.get('onnxruntime', '?')}, "
            f"{', '.join(rec_on.get('providers') or ['?'])}")
