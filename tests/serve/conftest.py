"""A real mof-serve on loopback for the tests: uvicorn in a thread, a free port, stopped by the test."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from mof.runtime import DEFAULT_BUNDLE, Model
from mof.serve.config import ServeConfig
from serve_probe import wait_healthy


@pytest.fixture(scope="session")
def demo_model():
    return Model.load(DEFAULT_BUNDLE)


@contextlib.contextmanager
def running(config: ServeConfig = ServeConfig(), model=None, timeout: float = 30.0, backend=None,
            wait: bool = True):
    """Serve ``create_app(config, model, backend)`` on 127.0.0.1 (a free port); yields the base URL
    (once the model is loaded, unless ``wait`` is false or the config names a bundle to load)."""
    import uvicorn
    from mof.serve.app import create_app
    app = create_app(config, model, backend)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not (server.started and server.servers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        if wait and (model is not None or config.model is None):     # preloaded: ready at once
            if not wait_healthy(url, thread.is_alive, deadline - time.monotonic(), interval=0.02):
                raise RuntimeError("the model did not load")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="module")
def served(demo_model):
    pytest.importorskip("fastapi", reason="mof-serve needs the [serve] extra")
    """The demo model behind a server with default settings."""
    with running(ServeConfig(), demo_model) as url:
        yield url


def client(url: str, key: str = "none"):
    from openai import OpenAI
    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
