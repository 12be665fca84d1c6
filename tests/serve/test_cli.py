"""mof-serve as a user starts it: one-line errors, and SIGTERM lets the open request finish."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="mof-serve needs the [serve] extra")

from mof.serve.probe import free_port, wait_healthy  # noqa: E402

SERVE = [sys.executable, "-m", "mof.serve.cli"]


def test_help_and_bad_bundle_are_one_line(tmp_path):
    assert "--max-batch" in subprocess.run(SERVE + ["--help"], capture_output=True, text=True, check=True).stdout
    out = subprocess.run(SERVE + ["--model", str(tmp_path / "nope.mof")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("mof-serve: error:") and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run(SERVE + ["--max-batch", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "expected an integer >= 1" in out.stderr


def test_sigterm_drains_the_open_stream_then_exits(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(SERVE + ["--port", str(port), "--log-level", "warning", "--state-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_healthy(url, lambda: proc.poll() is None, timeout=60), \
            proc.stderr.read() if proc.poll() is not None else "no answer within 60 s"
        with httpx.stream("POST", url + "/v1/completions", timeout=60,
                          json={"model": "t6-demo", "prompt": "床前", "max_tokens": 300, "stream": True}) as r:
            lines = r.iter_lines()
            first = next(lines)
            proc.send_signal(signal.SIGTERM)               # the server stops listening, the stream goes on
            rest = [line for line in lines if line]
        assert first.startswith("data: ") and rest[-1] == "data: [DONE]"
        finish = [json.loads(line[6:])["choices"][0]["finish_reason"] for line in rest[:-1]]
        assert finish[-1] == "length"
        assert proc.wait(timeout=30) == 0
        assert list(tmp_path.glob("*.npz")), "the finished conversation's state was kept in --state-dir"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
