"""mof-bench's roofline: the memory floor of each mode's tokens (and of one plain step), and the
compute floor and the recurrence-aware floor of each window pass (stream refills, exact passes,
prefill), from the probes (``mof.bench.probes``) and the MAC count and recurrences of the decode
graph (``mof.bench.macs``). docs/bench.md explains the floors."""

from __future__ import annotations

import functools
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


def measure(manifest, bundle: Path, precisions, mode_bytes: dict, step_bytes: dict, threads: Optional[int],
            log) -> dict:
    """Count each precision's graph and probe this machine: {"sites": {precision: GraphMacs},
    "step_sites": {...}, "peaks": {precision: Probe used}, "reads": {precision: {recurrent weight:
    seconds of one step's read}}, "machine": {...}, "floor": {"mode/precision": {...}},
    "step_floor": {precision: {...}}}. ``mode_bytes``: (mode, precision) -> weight bytes read per
    token; ``step_bytes``: precision -> the weight bytes of one plain step."""
    sites, kernels, peaks, machine, floor = {}, {}, {}, {"peak_gmacs": {}, "memory_probes": {}}, {}
    steps, reads = {}, {}
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
    read = functools.lru_cache(maxsize=None)(lambda k, nbytes: probes.read_floor(k, nbytes, threads))
    best_gbs, largest = float("nan"), -1
    for (mode, p), wb in mode_bytes.items():
        pr = read(kernels[p], wb)
        floor[f"{mode}/{p}"] = _memory_floor(wb, pr)
        machine["memory_probes"][f"{mode}/{p}"] = pr.read_gbs
        if pr.weight_bytes > largest:
            best_gbs, largest = pr.read_gbs, pr.weight_bytes
    machine["read_bandwidth_gbs"] = best_gbs       # the probe with the largest working set
    machine["threads"] = threads
    machine["recurrence_probes"] = {}
    for p in precisions:
        reads[p], machine["recurrence_probes"][p] = _recurrence_reads(sites[p], steps[p], kernels[p], read,
                                                                      threads)
    step_floor = {p: {**_memory_floor(step_bytes[p], read(kernels[p], step_bytes[p])),
                      **_floors(steps[p], 1, peaks[p], reads[p])} for p in step_bytes}
    return {"sites": sites, "step_sites": steps, "peaks": peaks, "reads": reads, "machine": machine,
            "floor": floor, "step_floor": step_floor}


def _memory_floor(nbytes: int, pr: probes.Probe) -> dict:
    """The memory floor of ``nbytes`` weight bytes from the probe that read at least as many."""
    return {"weight_bytes_per_token": nbytes, "floor_ms": pr.read_s * 1e3 * nbytes / pr.weight_bytes,
            "probe": {"kernel": pr.kernel, "shape": list(pr.shape), "weight_bytes": pr.weight_bytes,
                      "best_ms": pr.best_s * 1e3, "read_gbs": pr.read_gbs}}


def recurrence_kernel(op: str, graph_kernel: probes.Kernel) -> probes.Kernel:
    """The kernel a recurrent weight is read with: a GRU op's and a MatMul's fp32, an int8
    product's own, an int4 product's the graph's MatMulNBits."""
    return {"MatMulInteger": probes.INT8_KERNELS[0], "MatMulIntegerToFloat": probes.INT8_KERNELS[1],
            "MatMulNBits": graph_kernel}.get(op, probes.FP32)


def _recurrence_reads(sites, step_sites, graph_kernel, read, threads) -> tuple[dict, dict]:
    """({recurrent weight: seconds one step's read of it takes}, what the machine section records
    of each): the faster per read of two probes at the weight's bytes — REREADS reads in a run (the
    call's fixed cost spread over them) and one read a run (the cache as warm as it gets)."""
    times, record = {}, {}
    for r in {r.weight: r for g in (sites, step_sites) for r in g.recurrences(1)}.values():
        k = recurrence_kernel(r.op, graph_kernel)
        pr = min((probes.reread_floor(k, r.weight_bytes, threads), read(k, r.weight_bytes)),
                 key=lambda x: x.read_s / x.weight_bytes)
        times[r.weight] = pr.read_s * r.weight_bytes / pr.weight_bytes
        record[r.weight] = {"op": r.op, "kernel": pr.kernel, "weight_bytes": r.weight_bytes,
                            "probe_bytes": pr.weight_bytes, "reads": pr.reads,
                            "step_us": times[r.weight] * 1e6, "read_gbs": pr.read_gbs}
    return times, record


def _floors(sites, tokens: int, peak: probes.Probe, reads: dict) -> dict:
    """A pass's floors: the compute floor (every MAC at the peak) and the recurrence-aware floor —
    the MACs outside the recurrences' step products at the peak (``parallel_ms``), plus per
    recurrent step its weight's read, or its product's MACs at the peak if that is longer
    (``sequential_ms``)."""
    m, seq_macs = sites.macs(tokens), sites.sequential_macs(tokens)
    rec = sites.recurrences(tokens)
    sequential_s = sum(r.steps * max(reads[r.weight], r.step_macs / peak.macs_per_s) for r in rec)
    parallel_ms = (m - seq_macs) / peak.macs_per_s * 1e3
    return {"macs": m, "compute_floor_ms": m / peak.macs_per_s * 1e3,
            "recurrent_steps": sum(r.steps for r in rec),
            "recurrent_bytes": sum(r.steps * r.weight_bytes for r in rec),
            "parallel_ms": parallel_ms, "sequential_ms": sequential_s * 1e3,
            "recurrence_floor_ms": parallel_ms + sequential_s * 1e3}


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
FLOOR_KEYS = ("macs", "gmacs_per_s", "compute_floor_ms", "compute_floor_multiple", "recurrent_steps",
              "recurrent_bytes", "parallel_ms", "sequential_ms", "recurrence_floor_ms",
              "recurrence_floor_multiple")      # a pass's, null without onnx


def _entry(kind: str, tokens: int, ms: list, sites, peak, reads) -> dict:
    ms = np.asarray(ms, float)
    e = {"pass": kind, "tokens": int(tokens), "count": int(ms.size),
         "ms_p50": float(np.percentile(ms, 50)), "ms_p95": float(np.percentile(ms, 95)),
         **dict.fromkeys(FLOOR_KEYS)}
    if sites is not None:
        e.update(_floors(sites, tokens, peak, reads))
        e["gmacs_per_s"] = e["macs"] / (e["ms_p50"] * 1e6)
        for key in ("compute_floor", "recurrence_floor"):
            e[f"{key}_multiple"] = e["ms_p50"] / e[f"{key}_ms"] if e[f"{key}_ms"] else None
    return e


def annotate(r: dict, measured: Optional[dict]) -> None:
    """Add the window passes of one result (``passes``, ``refill_ms_p50/p95``) from what the
    worker recorded (``window_passes``: [tokens, ms] per decoded token that ran one; prefill's
    ``tokens``)."""
    p = r["precision"]
    sites = measured["sites"][p] if measured else None
    peak = measured["peaks"][p] if measured else None
    reads = measured["reads"][p] if measured else None
    out = []
    prefill_sites = measured["step_sites"][p] if measured and r["mode"] == "plain" else sites
    for L, pf in sorted(r["prefill"].items(), key=lambda kv: int(kv[0])):
        e = _entry("prefill", pf["tokens"], [pf["ttft_s"] * 1e3], prefill_sites, peak, reads)
        e["prompt_length"] = int(L)
        out.append(e)
    raw = r.pop("window_passes", [])
    kind = "exact" if r["mode"] == "exact" else "refill"
    r["refill_ms_p50"] = r["refill_ms_p95"] = None
    if raw:
        steady = max(t for t, _ in raw)               # the passes after the text reached K / W ids
        e = _entry(kind, steady, [ms for t, ms in raw if t == steady], sites, peak, reads)
        out.append(e)
        if kind == "refill":
            r["refill_ms_p50"], r["refill_ms_p95"] = e["ms_p50"], e["ms_p95"]
    r["passes"] = out
