"""mof-bench's roofline: the memory floor of each mode's tokens and the compute floor of each
window pass (stream refills, exact passes, prefill), from the probes (``mof.bench.probes``) and
the MAC count of the decode graph (``mof.bench.macs``). docs/bench.md explains both floors."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import macs as macs_mod
from . import probes

NO_ONNX = "no onnx package: no memory floor, MACs or compute floors (pip install 'mof[quant]')"


def have_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def decode_graph(manifest, bundle: Path, precision: str) -> Path:
    """The graph decoding runs its window passes through: the decode graph, else the chunk graph."""
    return bundle / (manifest.graph_file("decode", precision) or manifest.graph_file("chunk", precision))


def measure(manifest, bundle: Path, precisions, mode_bytes: dict, threads: Optional[int], log) -> dict:
    """Count each precision's graph and probe this machine: {"sites": {precision: GraphMacs},
    "peaks": {precision: Probe used}, "machine": {...}, "floor": {"mode/precision": {...}}}.
    ``mode_bytes``: (mode, precision) -> weight bytes read per token."""
    sites, kernels, peaks, machine, floor = {}, {}, {}, {"peak_gmacs": {}, "memory_probes": {}}, {}
    steps = {}
    for p in precisions:
        sites[p] = macs_mod.count_sites(decode_graph(manifest, bundle, p))                 # window passes
        steps[p] = macs_mod.count_sites(decode_graph(manifest, bundle, p), refill=False)   # plain's prefill
        kernels[p] = probes.kernel_for(p, sites[p].kernels, sites[p].nbits)
    log("mof-bench: probing this machine's floors (one MatMul per kernel, "
        f"{'default' if not threads else threads} threads, best of {probes.MIN_REPEATS}+ runs) …")
    for p in precisions:
        todo = probes.INT8_KERNELS if kernels[p] in probes.INT8_KERNELS else (kernels[p],)
        got = {k.label: probes.peak_macs(k, threads) for k in todo}
        peaks[p] = got[kernels[p].label]
        machine["peak_gmacs"][p] = {"kernel": kernels[p].label, "gmacs": peaks[p].macs_per_s / 1e9,
                                    "measured": {lab: pr.macs_per_s / 1e9 for lab, pr in got.items()},
                                    "shape": list(probes.PEAK_SHAPE)}
    best_gbs, largest = float("nan"), -1
    for (mode, p), wb in mode_bytes.items():
        pr = probes.read_floor(kernels[p], wb, threads)
        floor[f"{mode}/{p}"] = {"weight_bytes_per_token": wb, "floor_ms": pr.best_s * 1e3 * wb / pr.weight_bytes,
                                "probe": {"kernel": pr.kernel, "shape": list(pr.shape),
                                          "weight_bytes": pr.weight_bytes, "best_ms": pr.best_s * 1e3,
                                          "read_gbs": pr.read_gbs}}
        machine["memory_probes"][f"{mode}/{p}"] = pr.read_gbs
        if pr.weight_bytes > largest:
            best_gbs, largest = pr.read_gbs, pr.weight_bytes
    machine["read_bandwidth_gbs"] = best_gbs       # the probe with the largest working set
    machine["threads"] = threads
    return {"sites": sites, "step_sites": steps, "peaks": peaks, "machine": machine, "floor": floor}


# --- worker side: which token reads ran a window pass --------------------------------------
def pass_tokens(dec, mode: str, refills_before: int, n_read: int) -> Optional[int]:
    """Tokens of the window pass the decoder's last feed ran (None: it stepped), ``n_read``
    ids read so far: exact mode re-reads the last W, a stream refill the last K."""
    if mode == "exact":
        return min(n_read, dec.model.config.window)
    if dec.refills > refills_before:
        return min(n_read, dec.keep)
    return None


def prefill_tokens(dec, mode: str, length: int) -> int:
    """Tokens of the pass that reads a prompt of ``length``: stream the last K, exact the last W,
    plain all of it (one step-graph call)."""
    if mode == "exact":
        return min(length, dec.model.config.window)
    return length if mode == "plain" else min(length, dec.keep)


# --- report ----------------------------------------------------------------------------------
def _entry(kind: str, tokens: int, ms: list, sites, peak) -> dict:
    ms = np.asarray(ms, float)
    e = {"pass": kind, "tokens": int(tokens), "count": int(ms.size),
         "ms_p50": float(np.percentile(ms, 50)), "ms_p95": float(np.percentile(ms, 95)),
         "macs": None, "gmacs_per_s": None, "compute_floor_ms": None, "compute_floor_multiple": None}
    if sites is not None:
        m = sites.macs(tokens)
        floor_ms = m / peak.macs_per_s * 1e3
        e.update(macs=m, gmacs_per_s=m / (e["ms_p50"] * 1e6), compute_floor_ms=floor_ms,
                 compute_floor_multiple=e["ms_p50"] / floor_ms if floor_ms else None)
    return e


def annotate(r: dict, measured: Optional[dict]) -> None:
    """Add the window passes of one result (``passes``, ``refill_ms_p50/p95``) from what the
    worker recorded (``window_passes``: [tokens, ms] per decoded token that ran one; prefill's
    ``tokens``)."""
    p = r["precision"]
    sites = measured["sites"][p] if measured else None
    peak = measured["peaks"][p] if measured else None
    out = []
    prefill_sites = measured["step_sites"][p] if measured and r["mode"] == "plain" else sites
    for L, pf in sorted(r["prefill"].items(), key=lambda kv: int(kv[0])):
        e = _entry("prefill", pf["tokens"], [pf["ttft_s"] * 1e3], prefill_sites, peak)
        e["prompt_length"] = int(L)
        out.append(e)
    raw = r.pop("window_passes", [])
    kind = "exact" if r["mode"] == "exact" else "refill"
    r["refill_ms_p50"] = r["refill_ms_p95"] = None
    if raw:
        steady = max(t for t, _ in raw)               # the passes after the text reached K / W ids
        e = _entry(kind, steady, [ms for t, ms in raw if t == steady], sites, peak)
        out.append(e)
        if kind == "refill":
            r["refill_ms_p50"], r["refill_ms_p95"] = e["ms_p50"], e["ms_p95"]
    r["passes"] = out
