"""mof-bench produces the documented JSON schema and a plot, without TensorFlow (on the demo bundle)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from mof.bench.roofline import NO_ONNX


@pytest.fixture(scope="module")
def bench_run(fp32_bundle, tmp_path_factory):
    """mof-bench run once on the demo bundle without int8 graphs: (process, report)."""
    out = tmp_path_factory.mktemp("bench") / "b.json"
    proc = subprocess.run([sys.executable, "-m", "mof.bench.cli", str(fp32_bundle),
                           "--decode-tokens", "8", "--prompt-lengths", "4,16", "--json", str(out),
                           "--precisions", "fp32,int8"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


def test_bench_json_schema(bench_run):
    proc, report = bench_run
    assert "no int8 graphs" in proc.stderr          # this bundle has none: said, skipped
    assert {"results", "machine", "floor"} <= set(report)
    # the floors need the graph walk (onnx): a runtime-only install reports none and says why
    has_onnx = importlib.util.find_spec("onnx") is not None
    if has_onnx:
        assert report["machine"]["read_bandwidth_gbs"] > 0
    else:
        assert report["machine"]["read_bandwidth_gbs"] is None and NO_ONNX in proc.stdout + proc.stderr
    modes = {(r["mode"], r["precision"]) for r in report["results"]}
    assert modes == {("stream", "fp32"), ("exact", "fp32")}
    for r in report["results"]:
        for key in ("decode_tokens_per_s", "decode_ms_p50", "decode_ms_p95", "prefill_tokens_per_s",
                    "ttft_s", "peak_rss_mb", "load_s") + (("floor_multiple",) if has_onnx else ()):
            assert r[key] > 0, key
        assert r["decode_ms_p95"] >= r["decode_ms_p50"]
    assert "p50 ms" in proc.stdout


def test_bench_table_names_the_prompt_length_of_each_ttft(bench_run):
    """One TTFT column per --prompt-lengths entry, each showing that length's measured figure."""
    from mof.bench.cli import format_table
    proc, report = bench_run
    header, *rows = proc.stdout.splitlines()[:1 + len(report["results"])]
    assert "TTFT@4 s" in header and "TTFT@16 s" in header and "prefill@16 tok/s" in header
    assert header.count("TTFT") == 2
    for r, row in zip(report["results"], rows):
        cells = row.split()
        first = cells.index(f"{r['load_s']:.2f}") + 1
        assert cells[first:first + 2] == [f"{r['prefill'][L]['ttft_s']:.3f}" for L in ("4", "16")]
    # a length a mode skipped shows "-", not another length's figure
    lone = {**report, "prompt_lengths": [4, 16, 999]}
    cells = format_table(lone).splitlines()[1].split()
    first = cells.index(f"{report['results'][0]['load_s']:.2f}") + 1
    assert cells[first + 2] == "-"


def test_bench_plot(bench_run, tmp_path):
    pytest.importorskip("matplotlib")                # --plot needs it; the runtime does not
    from mof.bench.cli import plot
    png = tmp_path / "b.png"
    plot(bench_run[1], png)
    assert png.stat().st_size > 1000


@pytest.mark.tf
def test_bench_runs_a_t7_bundle(tiny_t7_bundle, tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, "-m", "mof.bench.cli", str(tiny_t7_bundle), "--decode-tokens", "8",
                           "--prompt-lengths", "4", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    modes = {(r["mode"], r["precision"]) for r in json.loads(out.read_text())["results"]}
    assert modes == {("stream", "fp32"), ("exact", "fp32"), ("stream", "int8"), ("exact", "int8")}


def test_bench_without_onnx(demo_bundle, tmp_path):
    """A runtime-only install (no onnx): mof-bench still runs; the floors and MACs are skipped, said once."""
    out = tmp_path / "b.json"
    code = ("import sys; sys.modules['onnx'] = None; from mof.bench.cli import main; "
            f"sys.exit(main([{str(demo_bundle)!r}, '--precisions', 'fp32', '--modes', 'stream', "
            f"'--decode-tokens', '4', '--prompt-lengths', '4', '--json', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("no onnx package") == 1
    report = json.loads(out.read_text())
    r, = report["results"]
    assert r["passes"] and all(e["macs"] is None for e in r["passes"])
    assert report["floor"]["stream/fp32"]["floor_ms"] is None
    assert "MACs and compute floor skipped" in proc.stdout
