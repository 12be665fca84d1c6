"""Which onnxruntime a bundle's figures hold for (docs/embedding.md).

mof runs beside the onnxruntime an app ships: any version in SUPPORTED (the lowest and the highest
are tested in CI, .ci/run). A bundle records, per precision, the onnxruntime its accuracy was
measured with and the versions known to give the same logits on its own shapes (manifest
["onnxruntime"], written by ``record`` from KERNELS, measured per model in MODELS; for shapes never
measured, what held on every model, marked as inferred); bundles made before that record are judged
the same way from their scheme. Outside the known versions ``Model.load`` warns in one line; below a
version a precision's kernels need, it refuses; on a CPU and version with a known product bug
(PRODUCT_BUGS) it runs the bundle's self-check first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

SUPPORTED = ("1.20.1", "1.32.0")   # lowest and highest onnxruntime mof is tested with (pyproject's range)
CPU = "CPUExecutionProvider"       # the provider the recorded figures were measured on


@dataclass(frozen=True)
class Kernels:
    """What was measured of one graph scheme's kernels across onnxruntime versions, per model
    (each version in its own environment, logits against MEASURED_WITH's: benchmarks/ort_versions.py;
    the table is docs/platforms.md's)."""
    same: dict                     # model (MODELS) -> versions whose logits are MEASURED_WITH's within 1e-4
    requires: Optional[str] = None # below this version the kernels compute something else: refused
    why: str = ""                  # what changed, for the refusal

    def reproduces(self, model: Optional[str]) -> tuple[tuple[str, ...], str]:
        """(the versions known to reproduce a bundle of ``model``'s shapes, what that list rests on):
        that model's own list; for shapes never measured, the versions that reproduced on every
        model measured (inferred, not shown)."""
        if model in self.same:
            return tuple(self.same[model]), f"measured on this model's shapes ({model})"
        lists = [set(v) for v in self.same.values()]
        common = set.intersection(*lists) if lists else set()
        order = [v for v in dict.fromkeys(x for vs in self.same.values() for x in vs) if v in common]
        return (tuple(sorted(order, key=version)),
                f"inferred: the versions that reproduced on every model measured ({', '.join(self.same)}); "
                "this bundle's shapes were not measured (mof-check measures them on a machine)")


# The models the tables were measured on, by their configuration (manifest["model"] less
# model_type): a bundle with the same one has the same products, so the same kernel paths.
MODELS = {
    "demo": dict(vocab_size=3501, embed_dim=96, rnn_units=160, router_units=32, rnn_layers=1,
                 trans_layers=2, num_heads=4, ffn_dim=96, max_positions=512, trans_window=64, window=64,
                 family="t6", trans_layers_2=0, ffn_dim_2=0, embed_gru=True),
    "t6_beta_dense V=16000": dict(vocab_size=16000, embed_dim=512, rnn_units=1400, router_units=128,
                                  rnn_layers=1, trans_layers=23, num_heads=8, ffn_dim=512,
                                  max_positions=4096, trans_window=200, window=128, family="t6",
                                  trans_layers_2=0, ffn_dim_2=0, embed_gru=True),
    "t7_small V=16000": dict(vocab_size=16000, embed_dim=480, rnn_units=240, router_units=64, rnn_layers=1,
                             trans_layers=3, num_heads=6, ffn_dim=1920, max_positions=2048,
                             trans_window=140, window=128, family="t7", trans_layers_2=16, ffn_dim_2=480,
                             embed_gru=True),
}


def model_of(config) -> Optional[str]:
    """The name in MODELS of a bundle's configuration (a ModelConfig or its dict), if measured."""
    d = dict(config if isinstance(config, dict) else config.to_dict())
    d.pop("model_type", None)
    return next((name for name, m in MODELS.items() if m == d), None)


_R = tuple(f"1.{m}.{p}" for m, p in ((20, 1), (21, 1), (22, 1), (23, 2), (24, 4), (25, 1), (26, 0),
                                     (27, 0), (28, 0), (29, 0)))
_NEW = ("1.30.0", "1.31.1", "1.32.0")
_ALL = _R + _NEW
_DEMO_U8U8 = ("1.17.3", "1.18.1", "1.19.2", "1.20.1", "1.24.4", "1.25.0", "1.26.0") + _NEW
KERNELS = {
    # fp32: <= 9.5e-6 on the demo, <= 1.5e-5 at full size, on every version measured
    "fp32": Kernels(same={"demo": _ALL, "t6_beta_dense V=16000": _ALL, "t7_small V=16000": _ALL}),
    # int8 before 0.2 (uint8 x uint8 MatMulInteger), demo only: 5.7e-6 up to 1.26, 0.025 on 1.27-1.29
    "rowwise-u8u8": Kernels(same={"demo": _DEMO_U8U8}),
    # int8 (uint8 x 7-bit int8 MatMulIntegerToFloat): the demo <= 6.7e-6 everywhere; at full size
    # 0.19-0.24 (top-1 77-79 %) before 1.30 (docs/platforms.md)
    "rowwise-u8s8": Kernels(same={"demo": _ALL, "t6_beta_dense V=16000": _NEW, "t7_small V=16000": _NEW}),
    # int4: 2.8 and top-1 74 % before 1.29, 0.059 on 1.29, 0 from 1.30 (demo)
    "matmulnbits-int4": Kernels(same={"demo": _NEW, "t6_beta_dense V=16000": _NEW, "t7_small V=16000": _NEW},
                                requires="1.29.0",
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


MEASURED = {version(v) for v in _ALL}   # the versions the per-model lists were measured on


def current() -> str:
    import onnxruntime as ort
    return ort.__version__


def record(precision: str, scheme: Optional[str] = None, measured: Optional[str] = None,
           config=None) -> dict:
    """The manifest's onnxruntime record of one precision, for the writer (mof-export: fp32,
    mof-quantize: int8 / int4): the version its accuracy was measured with (this one), the
    versions known to give the same logits on the bundle's shapes (``config``: its ModelConfig)
    and what that list rests on, and, for a scheme that needs it, the lowest usable."""
    measured = measured or current()
    k = KERNELS.get(scheme or precision)
    known = k and version(measured) in {version(v) for vs in k.same.values() for v in vs}
    if known:
        same, basis = k.reproduces(model_of(config) if config is not None else None)
        same = same if version(measured) in {version(v) for v in same} else (measured,)
    else:
        same, basis = (measured,), "the version it was measured with"
    rec = {"measured": measured, "reproduces": list(same), "basis": basis}
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
        if "basis" in rec:
            return rec
        # written before the lists were per model (from the demo's alone): judged again on its shapes
        return {**record(precision, _scheme(manifest, precision), rec["measured"], manifest.get("model") or {}),
                **{k: rec[k] for k in ("requires", "why") if k in rec}}
    if precision == "fp32":
        measured = (manifest.get("producer") or {}).get("onnxruntime")
    else:
        accuracy = manifest.precision_record(precision).get("accuracy") or {}
        measured = (accuracy.get("measured_on") or {}).get("onnxruntime")
    if not isinstance(measured, str):
        return {}
    return record(precision, _scheme(manifest, precision), measured, manifest.get("model") or {})


def _scheme(manifest, precision: str) -> str:
    """The graph scheme KERNELS knows ``precision``'s graphs by (the quantization's name)."""
    if precision == "fp32":
        return "fp32"
    return ((manifest.precision_record(precision).get("quantization") or {}).get("name")) or precision


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
        shown = str(rec.get("basis", "")).startswith("measured on this model's shapes")
        differs = ("measured to differ on this model's shapes" if shown and version(running) in MEASURED
                   else "its logits may differ")
        notes.append(f"measured with onnxruntime {rec['measured']} and known to reproduce on "
                     f"{_span(known)}; this is onnxruntime {running}, {differs}")
    other = [p for p in providers if p != CPU]
    if other:
        notes.append(f"measured on the CPU provider; this runs {', '.join(other)}")
    if not notes:
        return None
    return f"{where}: {precision} figures were {'; '.join(notes)} (mof-check {where} measures it; docs/platforms.md)"


def _span(versions: list[str]) -> str:
    """Runs of consecutive measured minor versions: "1.17.3-1.26.0, 1.30.0-1.32.0"."""
    known = {version(v)[:2]: v for v in sorted(versions, key=version)}
    order = sorted(set(known) | {version(v)[:2] for v in MEASURED})
    runs, run = [], []
    for minor in order:
        if minor in known:
            run.append(known[minor])
        elif run:
            runs.append(run)
            run = []
    runs += [run] if run else []
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
