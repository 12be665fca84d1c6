"""The page mof-web writes, in a real browser (Debian's headless Chromium via Playwright), served by
`python -m http.server` on 127.0.0.1 — no model on the server: the tab downloads the bundle, verifies
it and runs it on onnxruntime-web. Typing 你好 gets the reply ChatSession gives for the same options
(the same seed: the same draws), the conversation goes on as Python's does, Stop ends a reply, Clear
starts afresh, the page says how many threads it runs and the tokens/s, a broken bundle shows an
error, not a blank page, and a browser without a CJK font is told which to install."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright ([dev] extra)")

from chromium import (browser, browser_without_cjk, playwright_session,  # noqa: E402,F401  (fixtures)
                      skip_without_chromium)
from mof.runtime import SamplingConfig  # noqa: E402
from mof.runtime.chat_session import ChatSession  # noqa: E402

from .conftest import copy_site, needs_npm, static_server  # noqa: E402

SCREENSHOT = Path(__file__).parents[2] / "docs" / "web-chat.png"     # MOF_UPDATE_SCREENSHOT=1 writes it

pytestmark = needs_npm
skip_without_chromium()


@pytest.fixture()
def open_page(browser):
    contexts = []

    def open_(url: str):
        context = browser.new_context(viewport={"width": 900, "height": 640}, locale="zh-CN")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("document.getElementById('status').dataset.state !== 'loading'")
        page.errors = errors
        return page
    yield open_
    for c in contexts:
        c.close()


def _settings(page, max_tokens: int, seed: int, temperature: float) -> None:
    if not page.evaluate("document.getElementById('settings').open"):
        page.click("#settings summary")
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#seed", str(seed))
    page.fill("#temperature", str(temperature))


def _say(page, text: str, wait: bool = True) -> dict:
    before = page.locator(".message.assistant").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    bubble = page.locator(".message.assistant").nth(before)
    bubble.wait_for()
    if not wait:
        return {"bubble": bubble, "index": before}
    page.wait_for_function("n => document.querySelectorAll('.message.assistant')[n].dataset.finish !== undefined",
                           arg=before)
    return {"text": bubble.locator(".text").inner_text(), "finish": bubble.get_attribute("data-finish"),
            "chunks": int(bubble.get_attribute("data-chunks"))}


def _python_turns(model, sampling: SamplingConfig, texts: list[str]) -> list[str]:
    session = ChatSession(model, sampling)
    replies = []
    for text in texts:
        gen = session.turn(text)
        replies.append("".join(gen))
        session.finish(gen)
    return replies


def test_typing_nihao_gets_the_python_runtimes_reply_in_the_tab(site, open_page, demo_model):
    sampling = SamplingConfig(max_tokens=40, seed=2, temperature=0.5)
    want = _python_turns(demo_model, sampling, ["你好", "你叫什么名字？"])
    with static_server(site) as url:
        page = open_page(url)
        assert page.inner_text("#status") == "ready", page.inner_text("#messages")
        assert page.is_hidden("#download")                     # the progress bar, gone once loaded
        assert page.inner_text("#info-model") == "t6-demo"
        assert page.inner_text("#info-precision") == "fp32"
        assert page.inner_text("#info-mode") == f"stream (R = {demo_model.recommended_refill_every})"
        assert page.inner_text("#info-backend") == "WASM SIMD, 1 thread"
        assert page.inner_text("#timings").endswith("WebAssembly SIMD, 1 thread: the page is not cross-origin isolated "
                                                     "(the server sends no COOP/COEP headers)")
        _settings(page, 40, 2, 0.5)
        first = _say(page, "你好")
        assert first["text"] == want[0] and first["finish"] == "stop" and first["chunks"] >= 2
        second = _say(page, "你叫什么名字？")                  # the conversation goes on from the kept state
        assert second["text"] == want[1]
        assert float(page.inner_text("#info-speed")) > 0
        assert "tokens in" in page.inner_text("#timings")
        assert page.errors == []
        if os.environ.get("MOF_UPDATE_SCREENSHOT"):
            page.screenshot(path=str(SCREENSHOT))


def test_stop_ends_a_reply_and_clear_starts_afresh(site, open_page, demo_model):
    long = ChatSession(demo_model, SamplingConfig(max_tokens=600, seed=3, temperature=1.5)).turn("写一首很长的诗")
    full = "".join(long)
    assert long.stats.generated_tokens == 600                  # a reply long enough to interrupt (~8 s here)
    with static_server(site) as url:
        page = open_page(url)
        _settings(page, 600, 3, 1.5)
        started = _say(page, "写一首很长的诗", wait=False)
        page.wait_for_function("n => Number(document.querySelectorAll('.message.assistant')[n].dataset.chunks) >= 3",
                               arg=started["index"], polling=20)
        page.click("#stop")
        page.wait_for_function("n => document.querySelectorAll('.message.assistant')[n].dataset.finish !== undefined",
                               arg=started["index"])
        bubble = started["bubble"]
        assert bubble.get_attribute("data-finish") == "stopped"
        assert bubble.locator(".meta").inner_text() == "(stopped)"
        shown = bubble.locator(".text").text_content()
        assert 3 <= int(bubble.get_attribute("data-chunks")) < 600
        assert full.startswith(shown) and len(shown) < len(full)  # Python's reply, cut where Stop came
        assert page.is_enabled("#send") and page.is_disabled("#stop")

        page.click("#clear")
        assert page.locator(".message").count() == 0
        _settings(page, 40, 2, 0.5)                             # after Clear: a fresh conversation
        reply = _say(page, "你好")
        assert reply["text"] == _python_turns(demo_model, SamplingConfig(max_tokens=40, seed=2, temperature=0.5),
                                              ["你好"])[0]
        assert page.errors == []


def test_a_cross_origin_isolated_page_runs_threads(site, open_page):
    with static_server(site, isolated=True) as url:
        page = open_page(url)
        assert page.inner_text("#status") == "ready", page.inner_text("#messages")
        assert page.evaluate("crossOriginIsolated") is True
        threads = int(page.get_attribute("#info-backend", "data-threads"))
        assert threads == min(4, page.evaluate("navigator.hardwareConcurrency")) and threads >= 2
        assert page.inner_text("#info-backend") == f"WASM SIMD, {threads} threads"
        assert page.inner_text("#timings").endswith(f"{threads} threads: the page is cross-origin isolated")
        _settings(page, 20, 2, 0.5)
        reply = _say(page, "你好")
        assert reply["text"] and reply["finish"] in ("stop", "length")


def test_a_broken_bundle_shows_an_error_not_a_blank_page(site, open_page, tmp_path):
    broken = copy_site(site, tmp_path / "broken")
    weights = broken / "bundle" / "weights.fp32.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with static_server(broken) as url:
        page = open_page(url)
        assert page.get_attribute("#status", "data-state") == "error"
        error = page.locator(".message.error").inner_text()
        assert error.startswith("cannot load the model: ") and "weights.fp32.bin does not match its sha256" in error
        assert page.is_disabled("#send") and page.is_hidden("#download")

    (broken / "bundle" / "manifest.json").unlink()               # no bundle at all
    with static_server(broken) as url:
        page = open_page(url)
        assert "is not a mof bundle (no manifest.json)" in page.locator(".message.error").inner_text()


def test_a_browser_without_a_cjk_font_is_told_which_to_install(site, browser, browser_without_cjk):
    """The site's page runs mof-serve's font check (fontcheck.js, copied): no note where a CJK font
    draws 你好中, the note where they are boxes (the Latin fonts alone)."""
    import shutil
    import subprocess
    found = shutil.which("fc-list") and subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True,
                                                       timeout=30).stdout.strip()
    with static_server(site) as url:
        for b, boxes in ((browser, False), (browser_without_cjk, True)):
            if not boxes and not found:
                continue                   # no CJK font on this machine: only the note's side can be checked
            context = b.new_context(locale="zh-CN")
            page = context.new_page()
            page.goto(url)
            page.wait_for_function("window.mofFonts !== undefined")
            assert page.evaluate("window.mofFonts.cjkMissing()") is boxes
            note = page.locator("#font-note")
            assert note.count() == int(boxes)
            if boxes:
                assert "apt install fonts-wqy-microhei" in note.inner_text()
            context.close()
