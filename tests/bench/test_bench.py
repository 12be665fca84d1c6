"""mof-bench produces the documented JSON schema, readable tables and a plot, without TensorFlow
(on the demo bundle). Nothing here is timed: the figures' values are not checked, only what is
printed of them and where."""

import copy
import importlib.util
import json
import re
import subprocess
import sys

import pytest

from mof.bench import report as bench_report
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


@pytest.fixture(scope="module")
def runtime_only_run(demo_bundle, tmp_path_factory):
    """mof-bench on its defaults (the demo: fp32, int8 and the int4 it keeps below its gates,
    skipped on an onnxruntime older than its kernels need; stream and exact; prompts 16, 128, 512) as a runtime-only install runs it, without onnx
    (the import fails); fewer decoded tokens: (process, report)."""
    out = tmp_path_factory.mktemp("bench") / "b.json"
    code = ("import sys; sys.modules['onnx'] = None; from mof.bench.cli import main; "
            f"sys.exit(main(['--decode-tokens', '8', '--json', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


def test_bench_json_schema(bench_run):
    proc, report = bench_run
    assert "no int8 graphs" in proc.stderr          # this bundle has none: said, skipped
    assert {"results", "machine", "floor", "accuracy_warnings"} <= set(report)
    assert report["schema_version"] == 4
    # the floors need the graph walk (onnx): a runtime-only install reports none and says why
    has_onnx = importlib.util.find_spec("onnx") is not None
    if has_onnx:
        assert report["machine"]["read_bandwidth_gbs"] > 0
    else:
        assert report["machine"]["read_bandwidth_gbs"] is None and NO_ONNX in proc.stdout
    modes = {(r["mode"], r["precision"]) for r in report["results"]}
    assert modes == {("stream", "fp32"), ("exact", "fp32")}
    for r in report["results"]:
        for key in ("decode_tokens_per_s", "decode_ms_p50", "decode_ms_p95", "prefill_tokens_per_s",
                    "ttft_s", "peak_rss_mb", "load_s") + (("floor_multiple",) if has_onnx else ()):
            assert r[key] > 0, key
        assert r["decode_ms_p95"] >= r["decode_ms_p50"]
        assert r["below_accuracy_gates"] is False                  # fp32 has no gates
    assert "p50 ms" in proc.stdout


def test_bench_table_names_the_prompt_length_of_each_ttft(bench_run):
    """One TTFT column per --prompt-lengths entry, each showing that length's measured figure (ms)."""
    proc, report = bench_run
    header, *rows = proc.stdout.splitlines()[:1 + len(report["results"])]
    assert "TTFT@4 " in header and "TTFT@16 " in header and "prefill@16" in header
    assert header.count("TTFT") == 2
    for r, row in zip(report["results"], rows):
        cells = row.split()
        first = cells.index(r["precision"]) + 1
        assert cells[first:first + 2] == [f"{r['prefill'][L]['ttft_s'] * 1e3:.1f}" for L in ("4", "16")]
    # a length a mode skipped shows "-", not another length's figure
    lone = {**report, "prompt_lengths": [4, 16, 999]}
    cells = bench_report.format_table(lone).splitlines()[1].split()
    assert cells[cells.index("fp32") + 3] == "-"


def _as_user_saw_it(report: dict) -> dict:
    """``report`` as the default run on the demo reads: three prompt lengths, floors measured,
    four-digit figures, int4 below its gates."""
    report = copy.deepcopy(report)
    report["prompt_lengths"] = [16, 128, 512]
    report["machine"]["read_bandwidth_gbs"] = 115.5
    for i, r in enumerate(report["results"]):
        r["prefill"] = {L: {"ttft_s": 1.234, "tokens_per_s": 123456.0, "tokens": 49} for L in ("16", "128", "512")}
        r["prompt_length"], r["prefill_tokens_per_s"], r["floor_multiple"] = 128, 123456.0, 1234.5
        r["decode_ms_p50"] = r["decode_ms_p95"] = 1234.56
        r["decode_tokens_per_s"] = 1895.0 + i
        if i == 0:
            r["precision"], r["below_accuracy_gates"] = "int4", True
        report["floor"][f"{r['mode']}/{r['precision']}"] = {"weight_bytes_per_token": 10**6, "floor_ms": 0.01 * (i + 1)}
        for e in r["passes"]:                             # five-digit multiples and MACs
            e.update(macs=12345.6e6, gmacs_per_s=1234.5, compute_floor_multiple=12345.6,
                     recurrence_floor_multiple=12345.6, ms_p50=12345.67, ms_p95=12345.67)
    report["accuracy_warnings"] = {"int4": "int4 was kept below the accuracy gates (...)"}
    # the floors' machine figures, as a run with onnx measures them (a runtime-only run has none)
    probe = {"weight_bytes": 78720, "step_us": 12345.6}
    report["machine"]["peak_gmacs"] = {"int8": {"kernel": "MatMulIntegerToFloat u8xs8", "gmacs": 12345.6,
                                                "measured": {"MatMulInteger u8xu8": 12345.6,
                                                             "MatMulIntegerToFloat u8xs8": 12345.6}}}
    report["machine"]["recurrence_probes"] = {p: {"/rnn/gru.0": probe, "/embed/gru": probe}
                                              for p in ("fp32", "int8")}
    report["step_floor"] = {p: {"floor_ms": 12345.678, "recurrence_floor_ms": 12345.678} for p in ("fp32", "int8")}
    return report


def test_default_table_fits_100_columns(bench_run):
    """The tables, legends and summary fit in 100 columns with three prompt lengths, floors and
    wide figures (the table was 165 columns)."""
    text = "\n".join([bench_report.format_table(_as_user_saw_it(bench_run[1])),
                      bench_report.format_passes(_as_user_saw_it(bench_run[1]))])
    assert "x floor" in text and "TTFT@512" in text and "x rec floor" in text and "a plain step" in text
    assert max(len(line) for line in text.splitlines()) <= bench_report.WIDTH


def test_summary_names_the_fastest_setting_within_the_gates(bench_run):
    report = _as_user_saw_it(bench_run[1])
    int4, fp32 = report["results"]                           # int4 the faster, below its gates
    int4["decode_tokens_per_s"], fp32["decode_tokens_per_s"] = 3000.0, 1000.0
    line = bench_report.summary(report)
    assert "\n" not in line and line.startswith("fastest: ")
    assert f"{bench_report.label(fp32)} fp32, 1000 tok/s" in line and "int4* not counted" in line
    int4["below_accuracy_gates"] = False                     # within its gates, it is the fastest
    assert bench_report.summary(report).startswith(f"fastest: {bench_report.label(int4)} int4, 3000 tok/s")


def test_native_kernels_are_said_in_the_legend_and_summary(bench_run):
    """A result that ran mof's native ops (docs/native.md) says so; stock results add nothing."""
    report = _as_user_saw_it(bench_run[1])
    assert bench_report.kernel_lines(report) == [] and "kernels" not in bench_report.summary(report)
    for r in report["results"]:
        r["kernels"] = "native (avx2)"
        r["below_accuracy_gates"] = False
    assert any("kernels native (avx2)" in line for line in bench_report.speed_legend(report))
    assert ", kernels native (avx2), " in bench_report.summary(report)


def test_summary_gives_the_mof_run_flags_of_the_setting(bench_run):
    """Only the flags the bundle's defaults (recorded in the report) do not already give."""
    report = bench_run[1]
    default = report["decoding_default"]
    assert default == {"mode": "stream", "refill_every": 16}              # the demo's recommendation
    r = {"precision": "int8", "mode": "stream", "refill_every": 16}
    assert bench_report.run_flags(r, default) == ["--int8"]
    assert bench_report.run_flags({**r, "refill_every": 4}, default) == ["--int8", "--refill-every", "4"]
    assert bench_report.run_flags({**r, "precision": "fp32", "mode": "exact", "refill_every": 1},
                                  default) == ["--mode", "exact"]
    assert bench_report.run_flags(r, {"mode": "exact", "refill_every": 1}) == \
        ["--int8", "--mode", "stream", "--refill-every", "16"]
    assert bench_report.run_flags(r, None) == ["--int8", "--mode", "stream", "--refill-every", "16"]
    flags = bench_report.run_flags(bench_report.fastest(report), default)
    assert bench_report.summary(report).endswith(f"(mof-run {' '.join(flags)})" if flags else "(mof-run's default)")


def test_bench_plot(bench_run, tmp_path):
    """The plot draws each result's measured tokens/s as a bar and its memory floor, labelled by
    mode and precision, hatching a precision below its gates; the file is a PNG of it."""
    pytest.importorskip("matplotlib")                # --plot needs it; the runtime does not
    report = _as_user_saw_it(bench_run[1])
    fig = bench_report.figure(report)
    ax, = fig.axes
    rs = report["results"]
    assert [b.get_height() for b in ax.patches] == [r["decode_tokens_per_s"] for r in rs]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{r['mode']}\n{bench_report.precision_label(r)}"
                                                            for r in rs]
    assert [b.get_hatch() for b in ax.patches] == ["//" if r.get("below_accuracy_gates") else None for r in rs]
    scatter, = ax.collections                        # the memory floor of each, in tokens/s
    assert list(scatter.get_offsets()[:, 1]) == pytest.approx([100_000, 50_000])
    assert ax.get_yscale() == "log"
    png = tmp_path / "b.png"
    bench_report.plot(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _int4_refused_here(bundle) -> bool:
    """Whether this onnxruntime is below the version the bundle's int4 kernels need."""
    from mof.runtime import ort_compat
    from mof.runtime.bundle import verify_bundle
    from mof.runtime.errors import MofError
    try:
        ort_compat.check(verify_bundle(bundle), "int4", bundle.name)
    except MofError:
        return True
    return False


def test_runtime_only_defaults_read_as_a_user_needs(runtime_only_run, demo_bundle):
    """Without onnx: said once in one line; no floor column and no NaN; int4 marked with its
    legend; a one-line summary of the fastest setting within the gates; 100 columns."""
    proc, report = runtime_only_run
    out = proc.stdout
    assert (out + proc.stderr).count("no onnx package") == 1 and NO_ONNX in out.splitlines()
    assert "x floor" not in out and not re.search(r"\bnan\b", out, re.I) and "MMAC" not in out
    assert "x rec floor" not in out and report["step_floor"] is None
    assert max(len(line) for line in out.splitlines()) <= bench_report.WIDTH
    rows = [line for line in out.splitlines() if line.startswith(("stream", "exact"))]
    int4_rows = [line for line in rows if " int4" in line]
    if _int4_refused_here(demo_bundle):       # onnxruntime < 1.29: int4 said and skipped, not run
        assert not int4_rows and "int4" not in report["accuracy_warnings"]
        assert sum("the int4 graphs need onnxruntime >= 1.29.0" in line and line.endswith("; skipped")
                   for line in proc.stderr.splitlines()) == 1
    else:
        assert len(int4_rows) >= 4 and all("int4*" in line.split() for line in int4_rows)   # every table
        assert sum(line.startswith("int4*: int4 was kept below the accuracy gates") for line in out.splitlines()) == 1
        assert report["accuracy_warnings"]["int4"]
    assert not report["accuracy_warnings"]["int8"]
    last = out.rstrip().splitlines()[-1]
    best = max((r for r in report["results"] if r["precision"] != "int4"), key=lambda r: r["decode_tokens_per_s"])
    assert last.startswith(f"fastest: {bench_report.label(best)} {best['precision']}, ")
    assert ("int4* not counted" in last) == bool(int4_rows)
    r = report["results"][0]
    assert r["passes"] and all(e["macs"] is None for e in r["passes"])
    assert r["floor_multiple"] is None and report["floor"]["stream/fp32"]["floor_ms"] is None


@pytest.mark.tf
def test_bench_runs_a_t7_bundle(tiny_t7_bundle, tmp_path):
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, "-m", "mof.bench.cli", str(tiny_t7_bundle), "--decode-tokens", "8",
                           "--prompt-lengths", "4", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    modes = {(r["mode"], r["precision"]) for r in json.loads(out.read_text())["results"]}
    assert modes == {("stream", "fp32"), ("exact", "fp32"), ("stream", "int8"), ("exact", "int8")}


def test_output_files_are_kept_without_force(tmp_path):
    """An existing --json / --plot file is refused before anything runs, and left as it was."""
    for flag, name in (("--json", "b.json"), ("--plot", "b.png")):
        out = tmp_path / name
        out.write_text("mine")
        proc = subprocess.run([sys.executable, "-m", "mof.bench.cli", flag, str(out)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and f"{flag} {out} exists; add --force" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "probing" not in proc.stderr
        assert out.read_text() == "mine"


def test_plot_without_matplotlib_is_refused_before_running(tmp_path):
    out = tmp_path / "b.png"
    code = ("import sys; sys.modules['matplotlib'] = None; from mof.bench.cli import main; "
            f"sys.exit(main(['--plot', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--plot needs matplotlib" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
