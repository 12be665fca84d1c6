"""The chat page at / in a real browser: Debian's headless Chromium driven by Playwright. Typing
你好 streams the reply ChatSession gives for the same options; the conversation is kept (the second
turn continues the cached state), Stop ends a reply and frees its row, Clear starts afresh, and a
server with an API key asks for it. In a browser without a CJK font the page says which to install.

Needs the python `playwright` package ([dev] extra) and /usr/bin/chromium (`apt-get install
chromium`; `.ci/run` installs both). MOF_UPDATE_SCREENSHOT=1 also writes docs/serving-chat.png."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="mof-serve needs the [serve] extra")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright ([dev] extra)")

from chromium import (browser, browser_without_cjk, playwright_session,  # noqa: E402,F401  (fixtures)
                      skip_without_chromium)
from mof.runtime import SamplingConfig  # noqa: E402
from mof.runtime.chat_session import ChatSession  # noqa: E402
from mof.serve.config import ServeConfig  # noqa: E402

from .conftest import running  # noqa: E402

SCREENSHOT = Path(__file__).parents[2] / "docs" / "serving-chat.png"

skip_without_chromium()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 900, "height": 640}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _settings(page, max_tokens: int, seed: int, temperature: float) -> None:
    if not page.evaluate("document.getElementById('settings').open"):
        page.click("#settings summary")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#seed", str(seed))
    page.fill("#temperature", str(temperature))


def _say(page, text: str) -> dict:
    """Type ``text``, press Enter, wait for the reply to end; the reply's text, chunks and end."""
    before = page.locator(".message.assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    bubble = page.locator(".message.assistant").nth(before)
    bubble.wait_for()
    page.wait_for_function("n => document.querySelectorAll('.message.assistant')[n].dataset.finish !== undefined",
                           arg=before)
    return {"text": bubble.locator(".text").inner_text(), "chunks": int(bubble.get_attribute("data-chunks")),
            "finish": bubble.get_attribute("data-finish")}


def test_typing_nihao_streams_the_reply_and_keeps_the_conversation(page, demo_model, tmp_path):
    sampling = SamplingConfig(max_tokens=40, seed=2, temperature=0.5)
    session = ChatSession(demo_model, sampling, mode="stream")
    want = []
    for text in ("你好", "床前明月光"):
        gen = session.turn(text)
        want.append("".join(gen))
        session.finish(gen)
    with running(ServeConfig(), demo_model) as url:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('status').dataset.state === 'idle'")
        assert page.inner_text("#info-model") == "t6-demo"
        assert page.inner_text("#info-mode") == f"stream (R = {demo_model.recommended_refill_every})"
        assert page.inner_text("#info-precision") == "fp32"
        _settings(page, 40, 2, 0.5)
        first = _say(page, "你好")
        assert first["text"] == want[0] and any("\u4e00" <= c <= "\u9fff" for c in first["text"])
        assert first["chunks"] > 1, "the reply came in one piece, not streamed"
        assert float(page.inner_text("#info-speed")) > 0
        second = _say(page, "床前明月光")                        # the whole history goes back
        assert second["text"] == want[1]
        assert "cached" in page.inner_text("#timings") and " (0 cached)" not in page.inner_text("#timings")
        assert [m.inner_text() for m in page.locator(".message.user .text").all()] == ["你好", "床前明月光"]
        shot = tmp_path / "serving-chat.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("MOF_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, SCREENSHOT)


def test_stop_ends_the_reply_and_frees_its_row_and_clear_starts_afresh(page, demo_model, monkeypatch):
    import mof.serve.engine as engine_module
    real = engine_module.run_reads

    def slow(*a, **kw):                  # 50 ms a token: the demo's short replies last long enough to stop
        time.sleep(0.05)
        return real(*a, **kw)
    monkeypatch.setattr(engine_module, "run_reads", slow)
    with running(ServeConfig(), demo_model) as url:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('status').dataset.state === 'idle'")
        _settings(page, 4000, 1, 0.8)
        page.fill("#prompt", "你好")
        page.press("#prompt", "Enter")
        page.wait_for_function("(document.querySelector('.message.assistant') || {dataset: {}}).dataset.chunks > 3")
        page.click("#stop")
        page.wait_for_function("document.querySelector('.message.assistant').dataset.finish === 'stopped'")
        deadline = time.monotonic() + 5
        while httpx.get(url + "/health").json()["active"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(url + "/health").json()["active"] == 0
        page.click("#clear")
        assert page.locator(".message").count() == 0
        _settings(page, 5, 1, 0.8)
        reply = _say(page, "你好")                               # a new conversation: nothing cached
        assert reply["finish"] == "length" and " (0 cached)" in page.inner_text("#timings")


def test_a_server_with_an_api_key_asks_for_it(page, demo_model):
    with running(ServeConfig(api_key="s3cret"), demo_model) as url:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('status').dataset.state === 'key'")
        assert page.is_visible("#key-panel")
        page.fill("#api-key", "s3cret")
        page.click("#key-save")
        page.wait_for_function("document.getElementById('status').dataset.state === 'idle'")
        assert not page.is_visible("#key-panel")
        _settings(page, 5, 1, 0.8)
        assert _say(page, "你好")["finish"] == "length"


def _has_cjk_font() -> bool:
    out = shutil.which("fc-list") and subprocess.run(["fc-list", ":lang=zh"], capture_output=True,
                                                                      text=True, timeout=30).stdout
    return bool(out and out.strip())


def _font_note(browser, url: str) -> tuple[bool, str]:
    """(the page's own check: is Chinese drawn as boxes?, the note's text or "")."""
    context = browser.new_context(locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_function("window.mofFonts !== undefined")
        missing = page.evaluate("window.mofFonts.cjkMissing()")
        note = page.locator("#font-note")
        return missing, note.inner_text() if note.count() else ""
    finally:
        context.close()


def test_the_font_note_shows_only_in_a_browser_without_a_cjk_font(browser, browser_without_cjk, demo_model):
    """With fonts-wqy-microhei installed the page says nothing; the same browser given the Latin
    fonts alone (a fontconfig without CJK, as Debian's chromium alone) draws 你好中 as one box and
    the page names the font to install."""
    if not _has_cjk_font():
        pytest.skip("no CJK font on this machine (apt-get install fonts-wqy-microhei) to compare with")
    with running(ServeConfig(), demo_model) as url:
        assert _font_note(browser, url) == (False, "")
        missing, note = _font_note(browser_without_cjk, url)
    assert missing and "apt install fonts-wqy-microhei" in note and "CJK font" in note, note
