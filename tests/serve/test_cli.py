"""mof-serve as a user starts it: one-line errors, and SIGTERM lets the open request finish."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="mof-serve needs the [serve] extra")

from serve_probe import free_port, wait_healthy  # noqa: E402

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


def _start(args, tmp_path, env=None):
    import os
    port = free_port()
    proc = subprocess.Popen(SERVE + ["--port", str(port), "--log-level", "warning"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(url, lambda: proc.poll() is None, timeout=60):
        proc.kill()
        raise AssertionError(proc.communicate()[1] or "no answer within 60 s")
    return proc, url


def test_a_drain_timeout_ends_open_streams_with_an_error_and_done(tmp_path):
    """--drain-seconds 1 with a long stream open: the stream gets an error event then [DONE], the
    log says so in one line and shows no traceback, new connections are refused, exit 0."""
    proc, url = _start(["--drain-seconds", "1"], tmp_path)
    try:
        with httpx.stream("POST", url + "/v1/completions", timeout=60,
                          json={"model": "t6-demo", "prompt": "床", "max_tokens": 4096, "mode": "exact",
                                "stream": True}) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            proc.send_signal(signal.SIGTERM)
            import time
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):           # no new connections while draining
                httpx.get(url + "/health", timeout=5)
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]"
        error = json.loads(rest[-2][6:])["error"]
        assert error["type"] == "server_error" and "shut down" in error["message"]
        assert proc.wait(timeout=30) == 0
        log = proc.stderr.read()
        assert "Traceback" not in log and "CancelledError" not in log, log
        assert len([ln for ln in log.splitlines() if "drain" in ln]) == 1, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_ready_line_gives_the_chat_pages_address(tmp_path):
    """With --port 0 the ready line is the only place the port shows: the address it gives opens
    the chat page, and its API address lists the model."""
    import contextlib
    import queue
    import re
    import threading
    import time
    proc = subprocess.Popen(SERVE + ["--port", "0", "--state-dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        deadline, seen = time.monotonic() + 60, []
        while not (seen and "ready" in seen[-1]):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        m = re.search(r"mof-serve: t6-demo ready \(fp32, .+\): chat at (http://127\.0\.0\.1:(\d+)/), "
                      r"the OpenAI API at (\S+)$", seen[-1].rstrip())
        assert m and int(m.group(2)) > 0 and m.group(3) == m.group(1) + "v1", seen[-1]
        page = httpx.get(m.group(1), timeout=10)
        assert page.status_code == 200 and "<title>mof chat</title>" in page.text
        assert httpx.get(m.group(3) + "/models", timeout=10).json()["data"][0]["id"] == "t6-demo"
        assert len([line for line in seen if "ready" in line]) == 1, seen
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_page_address_of_a_wildcard_or_ipv6_host():
    from mof.serve.app import page_url
    assert page_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/"
    assert page_url("::", 80) == "http://[::1]:80/"
    assert page_url("192.168.1.5", 8000) == "http://192.168.1.5:8000/"
    assert page_url("fe80::1", 8000) == "http://[fe80::1]:8000/"
    assert page_url("localhost", 9) == "http://localhost:9/"


@pytest.mark.parametrize("how", ["file", "env"])
def test_the_api_key_from_a_file_or_the_environment(tmp_path, how):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    args, env = (["--api-key-file", str(key_file)], None) if how == "file" else ([], {"MOF_API_KEY": "s3cret"})
    proc, url = _start(args, tmp_path, env)
    try:
        assert httpx.get(url + "/v1/models").status_code == 401
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        if how == "file":
            assert "s3cret" not in " ".join(proc.args)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_bad_api_key_file_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, says in ((tmp_path / "missing", "cannot read it"), (empty, "first line is empty")):
        out = subprocess.run(SERVE + ["--api-key-file", str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and says in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run(SERVE + ["--api-key", "a", "--api-key-file", str(empty)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "not allowed with" in out.stderr


def test_every_setting_is_a_flag_with_its_default():
    from mof.serve.cli import build_parser
    from mof.serve.config import SETTINGS, ServeConfig
    parser = build_parser()
    dests = {a.dest: a for a in parser._actions}
    assert set(SETTINGS) <= set(dests), set(SETTINGS) - set(dests)
    assert ServeConfig(**{k: v for k, v in vars(parser.parse_args([])).items() if k in SETTINGS}) == ServeConfig()
    args = vars(parser.parse_args(["--max-queue", "0", "--queue-timeout", "2.5", "--cors-origin", "http://a",
                                   "--cors-origin", "http://b", "--int8", "--max-n", "3"]))
    assert (args["max_queue"], args["queue_timeout"], args["cors_origins"], args["precision"], args["max_n"]) == \
        (0, 2.5, ["http://a", "http://b"], "int8", 3)
    help_text = parser.format_help()
    assert "(default 512)" in help_text and "(default 120)" in help_text


def test_the_docs_name_only_flags_that_exist_and_the_demos_form():
    """docs/serving.md: every mof-serve flag it names is in --help (serve_load.py's and Ray's own
    commands aside), and it says which form the demo bundle records."""
    import re
    from pathlib import Path
    from mof.runtime import DEFAULT_BUNDLE
    from mof.runtime.bundle import read_manifest
    docs = (Path(__file__).parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    help_text = subprocess.run(SERVE + ["--help"], capture_output=True, text=True, check=True).stdout
    known = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
    others = {"--levels", "--tokens", "--requests", "--time-limit", "--burst", "--name", "--out",   # serve_load.py
              "--head", "--address"}                                                             # ray start
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", docs))
    assert named - known - others == set()
    form = read_manifest(DEFAULT_BUNDLE).form
    assert f"the demo bundle records the `{form}` form" in docs


def test_a_request_on_an_open_connection_during_the_drain_gets_a_503(tmp_path):
    """After SIGTERM the listening socket closes, but a client's open keep-alive connection may
    still carry a request: it gets a 503 with Retry-After (it got 0 bytes and a close) while a
    stream is still open; then the server exits 0 without a traceback."""
    import time
    proc, url = _start(["--drain-seconds", "20"], tmp_path)
    try:
        with httpx.Client(timeout=30) as keep_alive:
            with httpx.stream("POST", url + "/v1/completions", timeout=60,        # open for seconds
                              json={"model": "t6-demo", "prompt": "床", "max_tokens": 4096, "mode": "exact",
                                    "stream": True}) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("data: ")
                assert keep_alive.get(url + "/health").status_code == 200    # this connection stays open
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                late = keep_alive.get(url + "/v1/models")
                assert next(lines) is not None                                 # the stream goes on
        assert late.status_code == 503 and late.headers["retry-after"], late.text
        assert late.headers["connection"] == "close" and late.json()["error"]["type"] == "server_error"
        assert proc.wait(timeout=30) == 0                 # the stream's client left: the drain is over
        log = proc.stderr.read()
        assert "Traceback" not in log and "CancelledError" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_lone_surrogate_with_a_state_dir_then_sigterm_exits_promptly(tmp_path):
    """The issue's run: with --state-dir, a lone surrogate in a chat message was never answered, and
    SIGTERM then waited for uvicorn's own cut-off and printed a CancelledError traceback."""
    import threading
    import time
    proc, url = _start(["--drain-seconds", "1", "--state-dir", str(tmp_path)], tmp_path)
    answers = []

    def ask():
        try:
            r = httpx.post(url + "/v1/chat/completions", timeout=30, headers={"content-type": "application/json"},
                           content=json.dumps({"model": "t6-demo", "max_tokens": 4,
                                               "messages": [{"role": "user", "content": "a\ud800b"}]}))
            answers.append(r.status_code)
        except httpx.HTTPError as e:
            answers.append(type(e).__name__)
    try:
        asker = threading.Thread(target=ask)
        asker.start()
        asker.join(timeout=3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        took = time.monotonic() - t0
        asker.join(timeout=5)
        log = proc.stderr.read()
        assert answers == [400], answers
        assert took < 4, f"exit took {took:.1f} s after SIGTERM"
        assert "Traceback" not in log and "CancelledError" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
