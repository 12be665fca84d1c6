"""mof-bench's floors on the demo bundle: the memory floor is a floor (the probe reads at least the
bytes a mode reads per token, with the kernel the precision's graph uses and the run's threads,
and no mode beats it), and every window pass carries its MACs from the decode graph."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("onnx")                  # without it the floors are skipped (test_bench_without_onnx)

from mof.bench import probes  # noqa: E402
from mof.bench.macs import count_sites  # noqa: E402


@pytest.fixture(scope="module")
def demo_run(demo_bundle, tmp_path_factory):
    """One run on the demo (fp32, int8, int4) with refills inside the decoded tokens (R = 4)."""
    out = tmp_path_factory.mktemp("roof") / "r.json"
    proc = subprocess.run([sys.executable, "-m", "mof.bench.cli", str(demo_bundle), "--modes", "stream,plain,exact",
                           "--refill-every", "4", "--decode-tokens", "12", "--prompt-lengths", "16,100",
                           "--threads", "2", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


def test_memory_floor_is_a_floor(demo_run, demo_bundle):
    _, report = demo_run
    assert report["schema_version"] == 3
    assert report["machine"]["threads"] == report["threads"] == 2        # the probes ran with the run's threads
    seen = set()
    for r in report["results"]:
        f = report["floor"][f"{r['mode']}/{r['precision']}"]
        graph = demo_bundle / {"fp32": "decode.onnx", "int8": "decode.int8.onnx",
                               "int4": "decode.int4.onnx"}[r["precision"]]
        sites = count_sites(graph)
        kernel = probes.kernel_for(r["precision"], sites.kernels, sites.nbits)
        assert f["probe"]["kernel"] == kernel.label                        # the graph's own kernel
        assert kernel.op in sites.kernels
        assert f["probe"]["weight_bytes"] >= f["weight_bytes_per_token"] > 0   # at least the mode's bytes
        assert f["floor_ms"] <= f["probe"]["best_ms"]
        # A token is ~25 kernels, ~400 small ops and the sampler; the floor one kernel reading the same
        # bytes (best of >= 5 runs). Measured here: 50x-1000x; 1.0 is the claim, with room for a busy machine.
        assert r["floor_multiple"] >= 1.0, (r["mode"], r["precision"], r["floor_multiple"])
        seen.add(r["precision"])
    assert seen == {"fp32", "int8", "int4"}
    assert report["machine"]["peak_gmacs"]["int8"]["kernel"] == "MatMulIntegerToFloat u8xs8"   # the demo's scheme
    assert set(report["machine"]["peak_gmacs"]["int8"]["measured"]) == {"MatMulInteger u8xu8",
                                                                       "MatMulIntegerToFloat u8xs8"}


def test_window_passes_carry_macs_and_floors(demo_run, demo_bundle):
    proc, report = demo_run
    W = report["model"]["window"]
    sites = count_sites(demo_bundle / "decode.onnx")                     # window passes (refill)
    step_sites = count_sites(demo_bundle / "decode.onnx", refill=False)   # plain's prefill: one step call
    kinds = set()
    for r in report["results"]:
        passes = {(e["pass"], e.get("prompt_length")): e for e in r["passes"]}
        assert {("prefill", 16), ("prefill", 100)} <= set(passes)
        if r["mode"] == "stream":
            e = passes["refill", None]
            assert e["tokens"] == W - 4 + 1 and e["count"] >= 2        # K = W - R + 1, a refill per 4 tokens
            assert (r["refill_ms_p50"], r["refill_ms_p95"]) == (e["ms_p50"], e["ms_p95"])
            assert passes["prefill", 100]["tokens"] == W - 4 + 1
        elif r["mode"] == "exact":
            e = passes["exact", None]
            assert e["tokens"] == W and e["count"] == 12
            assert r["refill_ms_p50"] is None
        else:
            assert passes["prefill", 100]["tokens"] == 100               # plain: one step call over all of it
        for e in r["passes"]:
            kinds.add(e["pass"])
            counted = step_sites if r["mode"] == "plain" else sites
            assert e["macs"] == counted.macs(e["tokens"])                # every precision: the same MACs
            assert e["gmacs_per_s"] == pytest.approx(e["macs"] / e["ms_p50"] / 1e6)
            assert e["compute_floor_multiple"] == pytest.approx(e["ms_p50"] / e["compute_floor_ms"])
            assert e["compute_floor_multiple"] >= 1.0                    # nothing beats the peak
    assert kinds == {"prefill", "refill", "exact"}
    assert "x compute floor" in proc.stdout and "GMAC/s" in proc.stdout


@pytest.mark.parametrize("kernel", [probes.FP32, *probes.INT8_KERNELS, probes.Kernel("MatMulNBits", 4, 32, 4)])
@pytest.mark.parametrize("nbytes", [1, 100_000, 1_234_567])
def test_probe_reads_at_least_the_bytes_asked(kernel, nbytes):
    p = probes.read_floor(kernel, nbytes, threads=1)
    assert p.weight_bytes >= nbytes and p.shape[0] == 1 and p.best_s > 0
    assert p.weight_bytes < nbytes + 16 * 4 * probes.PROBE_K + 4096      # and not much more (N rounded to 16)


def test_int8_kernel_is_the_graphs():
    assert probes.kernel_for("int8", ("MatMulInteger",), ()).op == "MatMulInteger"
    assert probes.kernel_for("int8", ("MatMul", "MatMulIntegerToFloat"), ()).op == "MatMulIntegerToFloat"
    assert probes.kernel_for("int4", ("MatMulNBits",), ((4, 64, 4),)) == probes.Kernel("MatMulNBits", 4, 64, 4)
    assert probes.kernel_for("fp32", ("GRU", "MatMul"), ()) == probes.FP32
