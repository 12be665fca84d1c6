"""mof-bench produces the documented JSON schema and a plot, without TensorFlow."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tf       # the bundle comes from the export fixture


def test_bench_json_schema_and_plot(tiny_bundle, tmp_path):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    proc = subprocess.run([sys.executable, "-m", "mof.bench.cli", str(tiny_bundle),
                           "--decode-tokens", "8", "--prompt-lengths", "4,16", "--json", str(out),
                           "--plot", str(png), "--precisions", "fp32,int8"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no int8 graphs" in proc.stderr          # the tiny bundle has none: said, skipped
    report = json.loads(out.read_text())
    assert {"results", "machine", "floor"} <= set(report)
    assert report["machine"]["read_bandwidth_gbs"] > 0
    modes = {(r["mode"], r["precision"]) for r in report["results"]}
    assert modes == {("stream", "fp32"), ("exact", "fp32")}
    for r in report["results"]:
        for key in ("decode_tokens_per_s", "decode_ms_p50", "decode_ms_p95", "prefill_tokens_per_s",
                    "ttft_s", "peak_rss_mb", "load_s", "floor_multiple"):
            assert r[key] > 0, key
        assert r["decode_ms_p95"] >= r["decode_ms_p50"]
    assert png.stat().st_size > 1000
    assert "p50 ms" in proc.stdout
