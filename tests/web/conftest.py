"""What the mof-web tests share: a site written once per module, and static file servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORT_DIST = ROOT / "js" / "node_modules" / "onnxruntime-web" / "dist"

needs_npm = pytest.mark.skipif(not (ORT_DIST / "ort.wasm.min.mjs").is_file(),
                               reason="onnxruntime-web is not installed: run  npm ci --prefix js")

# A static file server that also sends the two headers that make a page cross-origin isolated
# (SharedArrayBuffer, so onnxruntime-web may run threads).
ISOLATED_SERVER = """
import functools, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])),
                                functools.partial(Handler, directory=sys.argv[1])).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def static_server(directory: Path, isolated: bool = False):
    """`python -m http.server` on 127.0.0.1 (or the isolating one), stopped on exit; yields its URL."""
    port = free_port()
    cmd = ([sys.executable, "-c", ISOLATED_SERVER, str(directory), str(port)] if isolated else
           [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(directory), str(port)])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            assert proc.poll() is None and time.monotonic() < deadline, "the static file server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The demo's site (fp32), written by mof-web."""
    from mof.web.cli import main
    out = tmp_path_factory.mktemp("web") / "site"
    assert main(["-o", str(out)]) == 0
    return out


def copy_site(site: Path, to: Path) -> Path:
    shutil.copytree(site, to)
    return to


@pytest.fixture(scope="module")
def demo_model():
    from mof.runtime import DEFAULT_BUNDLE, Model
    return Model.load(DEFAULT_BUNDLE)
