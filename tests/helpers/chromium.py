"""Debian's headless Chromium for the page tests (tests/serve/test_page.py, tests/web/test_page.py),
driven by Playwright: the binary, the flags a closed network needs, a skip when it is missing, and
one browser per test module. Import ``browser`` (and ``playwright_session``, which it runs on) into a test
module to use the fixture; ``browser_without_cjk`` is one with the Latin fonts alone."""

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


FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")   # Latin only


def fonts_without_cjk(folder: Path) -> dict:
    """Environment variables that give a browser the Latin fonts alone (what Debian's chromium
    brings by itself): a fontconfig file in ``folder`` listing only FONT_DIRS, its cache there."""
    dirs = "".join(f"<dir>{d}</dir>" for d in FONT_DIRS if Path(d).is_dir())
    conf = folder / "fonts.conf"
    conf.write_text(f'<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>{dirs}'
                    f"<cachedir>{folder / 'cache'}</cachedir></fontconfig>\n", encoding="utf-8")
    return {"FONTCONFIG_FILE": str(conf)}


@pytest.fixture(scope="module")
def playwright_session():
    from playwright import sync_api
    with sync_api.sync_playwright() as p:
        yield p


def _launch(playwright, env=None):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS, env=env)


@pytest.fixture(scope="module")
def browser(playwright_session):
    b = _launch(playwright_session)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def browser_without_cjk(playwright_session, tmp_path_factory):
    """The browser with no CJK font (fonts_without_cjk): Chinese text is drawn as boxes."""
    import os
    b = _launch(playwright_session, env={**os.environ, **fonts_without_cjk(tmp_path_factory.mktemp("fonts"))})
    try:
        yield b
    finally:
        b.close()
