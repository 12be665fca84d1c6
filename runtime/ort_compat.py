"""Which onnxruntime a bundle's figures hold for (docs/embedding.md).

mof runs beside the onnxruntime an app ships: any version in SUPPORTED (the lowest and the highest
are tested in CI, .ci/run). A bundle records, per precision, the onnxruntime its accuracy was
measured with and the versions known to give the same logits (manifest["onnxruntime"], written by
``record``); bundles made before that record are judged by what mof measured of their scheme's
kernels (KERNELS). Outside the known versions ``Model.load`` warns in one line; below a version a
precision's kernels need, it refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

SUPPORTED = ("1.20.1", "1.32.0")   # lowest and highest onnxruntime mof is tested with (pyproject's range)
CPU = "CPUExecutionProvider"       # the provider the recorded figures were measured on


@dataclass(frozen=True)
class Kernels:
    """What was measured of one graph scheme's kernels across onnxruntime versions (demo bundle,
    exact-mode logits at 28 positions of held-out text, each version in its own environment,
    against 1.32.0: tests/runtime/ort_logits.py; table in docs/embedding.md)."""
    same: tuple[str, ...]          # versions whose logits are 1.32.0's within the export's 1e-4
    requires: Optional[str] = None # below this version the kernels compute something else: refused
    why: str = ""                  # what changed, for the refusal


_OLD = ("1.17.3", "1.18.1", "1.19.2", "1.20.1", "1.24.4", "1.25.0", "1.26.0")
_NEW = ("1.30.0", "1.31.1", "1.32.0")
KERNELS = {          # max |Δlogit| vs 1.32.0: fp32 <= 9.5e-6 on every version measured
    "fp32": Kernels(same=_OLD + ("1.27.0", "1.28.0", "1.29.0") + _NEW),
    # int8 before 0.2 (uint8 x uint8 MatMulInteger): 5.7e-6 up to 1.26, 0.025 on 1.27-1.29 (top-1
    # all equal), 0 from 1.30
    "rowwise-u8u8": Kernels(same=_OLD + _NEW),
    # int8 (uint8 x 7-bit int8 MatMulIntegerToFloat): <= 9.5e-6 on every version measured
    "rowwise-u8s8": Kernels(same=("1.20.1", "1.24.4", "1.25.0", "1.26.0", "1.27.0", "1.28.0", "1.29.0") + _NEW),
    # int4: 3.7 and top-1 93 % on 1.19-1.28 (0.13-0.17 on 1.17-1.18), 0.028 on 1.29, 0 from 1.30
    "matmulnbits-int4": Kernels(same=_NEW, requires="1.29.0",
                                why="its MatMulNBits kernels compute other results before 1.29"),
}
MEASURED_WITH = "1.32.0"           # the version KERNELS' "same" lists are relative to


@dataclass(frozen=True)
class ProductBug:
    """onnxruntime versions whose kernels compute wrong products on CPUs with a feature, for some
    shapes only: a bundle is used there only once its self-check passes (Model.load)."""
    precision: str                 # the precision whose graphs run the broken kernel
    first: str                     # first and last version measured wrong
    last: str
    cpu_flag: str                  # runtime/machine.py's flag that selects the broken kernel
    why: str


PRODUCT_BUGS = (
    # An outside test on an Intel Xeon with AMX (docs/platforms.md): single u8 x s8 products wrong
    # when N mod 32 is 17-31 and M >= 32 on 1.21.1-1.24.4 (onnxruntime issue 26324), right on 1.20.1
    # and with AMX blocked; full-size t6_beta_dense's widths are spared, E = 520 / 392 RNN units are not.
    ProductBug("int8", "1.21.0", "1.24.4", "amx_int8",
               "MatMulIntegerToFloat's AMX kernels compute wrong products for some output widths"),
)


def product_bug(precision: str, running: Optional[str] = None, flags=None) -> Optional[ProductBug]:
    """The known kernel bug this onnxruntime has on this CPU for ``precision``, if any."""
    from .machine import cpu_flags
    running = version(running or current())
    flags = cpu_flags() if flags is None else set(flags)
    for bug in PRODUCT_BUGS:
        if (bug.precision == precision and bug.cpu_flag in flags
                and version(bug.first) <= running <= version(bug.last)):
            return bug
    return None


def version(text: str) -> tuple[int, ...]:
    """"1.24.4" -> (1, 24, 4); a local or dev suffix ("1.24.1+openvino", "1.33.0.dev1") is dropped."""
    m = re.match(r"(\d+(?:\.\d+)*)", str(text))
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


def current() -> str:
    import onnxruntime as ort
    return ort.__version__


def record(precision: str, scheme: Optional[str] = None, measured: Optional[str] = None) -> dict:
    """The manifest's onnxruntime record of one precision, for the writer (mof-export: fp32,
    mof-quantize: int8 / int4): the version its accuracy was measured with (this one), the
    versions known to give the same logits and, for a scheme that needs it, the lowest usable."""
    measured = measured or current()
    k = KERNELS.get(scheme or precision)
    same = k.same if k and version(measured) in {version(v) for v in k.same} else (measured,)
    rec = {"measured": measured, "reproduces": list(same)}
    if k and k.requires:
        rec["requires"] = k.requires
        rec["why"] = k.why
    return rec


def precision_record(manifest, precision: str) -> dict:
    """The bundle's own record of ``precision``, else one built from what older bundles say: the
    version their accuracy (fp32: their export) was measured with, and KERNELS for their scheme."""
    section = manifest.get("onnxruntime")
    rec = section.get(precision) if isinstance(section, dict) else None
    if isinstance(rec, dict) and isinstance(rec.get("measured"), str):
        return rec
    if precision == "fp32":
        measured, scheme = (manifest.get("producer") or {}).get("onnxruntime"), "fp32"
    else:
        prec = manifest.precision_record(precision)
        measured = ((prec.get("accuracy") or {}).get("measured_on") or {}).get("onnxruntime")
        scheme = (prec.get("quantization") or {}).get("name")
    if not isinstance(measured, str):
        return {}
    return record(precision, scheme, measured)


def check(manifest, precision: str, where: str, providers=(CPU,), running: Optional[str] = None) -> Optional[str]:
    """None when this onnxruntime is known to reproduce the bundle's ``precision`` figures, else
    the one-line warning; raises MofError below the version the precision's kernels need."""
    from .errors import MofError
    running = running or current()
    rec = precision_record(manifest, precision)
    if not rec:
        return None
    need = rec.get("requires")
    if isinstance(need, str) and version(running) < version(need):
        why = f" ({rec['why']})" if rec.get("why") else ""
        raise MofError(f"{where}: the {precision} graphs need onnxruntime >= {need}{why}; this is "
                       f"onnxruntime {running}, whose logits differ (docs/embedding.md)")
    notes = []
    known = [v for v in rec.get("reproduces") or [] if isinstance(v, str)] or [rec["measured"]]
    if version(running) not in {version(v) for v in known}:
        notes.append(f"measured with onnxruntime {rec['measured']} and known to reproduce on "
                     f"{_span(known)}; this is onnxruntime {running}")
    other = [p for p in providers if p != CPU]
    if other:
        notes.append(f"measured on the CPU provider; this runs {', '.join(other)}")
    if not notes:
        return None
    return f"{where}: {precision} figures were {'; '.join(notes)}: its logits may differ (docs/embedding.md)"


def _span(versions: list[str]) -> str:
    """Runs of consecutive measured versions: "1.17.3-1.26.0, 1.30.0-1.32.0"."""
    known = {version(v) for v in versions}
    order = sorted(known | {version(v) for k in KERNELS.values() for v in k.same})
    runs, run = [], []
    for v in order:
        if v in known:
            run.append(v)
        elif run:
            runs.append(run)
            run = []
    runs += [run] if run else []
    show = lambda v: ".".join(map(str, v))
    return ", ".join(show(r[0]) if len(r) == 1 else f"{show(r[0])}-{show(r[-1])}" for r in runs)
