"""Debian's headless Chromium for the page tests (tests/serve/test_page.py, tests/web/test_page.py),
driven by Playwright: the binary, the flags a closed network needs, a skip when it is missing, and
one browser per test module. Import ``browser`` into a test module to use the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")       # Playwright's own browser download cannot work here
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def skip_without_chromium() -> None:
    """Skip the calling test module (at import) when the browser is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"the browser test needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
                    allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()
