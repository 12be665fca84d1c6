"""Starting mof-serve from a test (tests/serve), a benchmark (benchmarks/serve_load.py) or CI's fuzz
run (.ci/serve_fuzz): a free loopback port, and waiting for /health. Standard library only (no
HTTP client needed); the tests find it on pytest's pythonpath, the scripts add tests/helpers."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from typing import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, alive: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``url``/health until it answers 200 (True), or until the server is gone (``alive()``
    false) or ``timeout`` seconds have passed (False). 503 (loading) and refused connections mean
    "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass                                       # not listening yet, or 503 while loading
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(interval)
