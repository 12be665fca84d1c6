"""examples/desktop_chat.py for real: a Tk window on a virtual X display (Xvfb), driven through its
widget API while the reply streams in from the worker thread; then a screenshot of it.

Set MOF_SCREENSHOT=path.png to keep the screenshot (docs/desktop_chat.png was made that way)."""

from __future__ import annotations

import importlib.util
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mof.runtime import Generator, SamplingConfig

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "desktop_chat.py"

tk = pytest.importorskip("tkinter", reason="this Python has no tkinter (Debian: python3-tk)")


def _load_example():
    spec = importlib.util.spec_from_file_location("desktop_chat", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dc = _load_example()


@pytest.fixture(scope="module")
def xdisplay():
    """A private Xvfb server on a free display number (Xvfb picks it: -displayfd)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(w)
    number = b""
    deadline = time.monotonic() + 20
    while not number.endswith(b"\n"):
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(r, 16) if ready else b""
        if not chunk:
            proc.kill()
            raise RuntimeError(f"Xvfb did not start: {proc.stderr.read().decode(errors='replace')[-500:]}")
        number += chunk
    os.close(r)
    display = ":" + number.decode().strip()
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    yield display
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def root(xdisplay):
    r = tk.Tk()
    r.geometry("760x600+0+0")
    yield r
    try:
        r.destroy()
    except tk.TclError:
        pass


def window(root, *argv):
    args = dc.build_parser().parse_args(list(argv))
    return dc.open_window(args, root)


def pump(root, until, timeout=30.0):
    """Run turns of the Tk loop (at least one) until ``until()``; returns the longest turn (s)."""
    worst = 0.0
    deadline = time.monotonic() + timeout
    while True:
        t = time.perf_counter()
        root.update()
        worst = max(worst, time.perf_counter() - t)
        if until():
            return worst
        if time.monotonic() > deadline:
            raise AssertionError("timed out pumping the Tk loop")
        time.sleep(0.005)


def model_part(transcript: str) -> str:
    """The text after the last 'Model' header, without the window's trailing separator."""
    return transcript.rsplit("Model\n", 1)[1]


def test_reply_streams_in_from_a_worker_and_equals_the_runtimes_text(root):
    win = window(root, "--int8", "--form", "raw", "--mode", "exact", "--seed", "3", "--max-tokens", "150")
    win.entry.insert(0, "床前明月光，")
    t = time.perf_counter()
    win.send_button.invoke()                      # the real button
    assert time.perf_counter() - t < 0.25         # send() hands the reply to the worker and returns
    assert win.busy and win.entry.get() == ""
    seen = set()

    def done():
        seen.add(len(win.transcript_text()))
        return not win.busy
    worst = pump(root, done)
    final = win.transcript_text()
    # streamed: the transcript grew through several intermediate lengths while the reply ran
    assert len(seen) >= 4, seen
    # the window never froze: no single turn of the Tk loop waited for the model
    assert worst < 0.25, worst
    # what the window shows is what mof.runtime generates for the same settings
    expect = "".join(Generator(win.model, "床前明月光，", SamplingConfig(max_tokens=150, seed=3), mode="exact"))
    assert model_part(final).rstrip("\n") == expect.rstrip("\n")
    assert final.startswith("You\n床前明月光，\nModel\n")
    status = win.status_text()
    assert re.search(r"\b150 tokens · \d+\.\d tok/s", status), status
    assert "exact mode" in status and "int8" in status and "raw form" in status
    assert win.replies == 1 and not win.busy


def test_stop_keeps_what_was_said_and_new_conversation_forgets(root):
    # '"' banned: the demo cannot close its reply, so it runs until Stop
    win = window(root, "--mode", "stream", "--max-tokens", "100000", "--seed", "1", "--ban", '"')
    win.entry.insert(0, "你好")
    assert win.send()
    assert not win.send()                         # one reply at a time
    pump(root, lambda: len(model_part(win.transcript_text())) >= 5)
    win.stop_button.invoke()
    pump(root, lambda: not win.busy, timeout=20)
    said = model_part(win.transcript_text())
    assert said.endswith("[stopped]\n\n"), said[-40:]
    assert "stopped" in win.status_text()
    tokens = int(re.search(r"(\d+) tokens", win.status_text()).group(1))
    assert 5 <= tokens < 100000
    history = win.session.conversation.history
    assert history.startswith('{"role": "user", "content": "你好"}, {"role": "assistant", "content": "')
    assert win.session.state is None              # an interrupted reply is re-read next turn

    win.new_button.invoke()
    assert win.transcript_text() == "" and win.session.conversation.history == ""
    assert "new conversation" in win.status_text()

    # New conversation while a reply runs: it stops, and nothing of it comes back
    win.entry.insert(0, "春眠不觉晓")
    assert win.send()
    pump(root, lambda: "Model\n" in win.transcript_text() and len(model_part(win.transcript_text())) >= 2)
    win.new_conversation()
    pump(root, lambda: not win.busy, timeout=20)
    assert win.transcript_text() == ""
    assert win.session.conversation.history == "" and win.session.state is None


def test_screenshot_is_not_blank(root, tmp_path):
    pytest.importorskip("PIL", reason="the screenshot needs Pillow (the [dev] extra)")
    from PIL import Image, ImageGrab, ImageStat
    win = window(root, "--int8", "--seed", "2", "--temperature", "0.5", "--max-tokens", "48")
    for message in ("你好", "你叫什么名字", "你喜欢诗吗", "什么是万有引力", "你会唱歌吗", "再见"):   # short replies
        win.entry.insert(0, message)
        n = win.replies
        assert win.send()
        pump(root, lambda: win.replies > n)
    root.update_idletasks()
    x, y = root.winfo_rootx(), root.winfo_rooty()
    bbox = (x, y, x + root.winfo_width(), y + root.winfo_height())
    shot = ImageGrab.grab(bbox=bbox, xdisplay=os.environ["DISPLAY"]).convert("RGB")
    path = tmp_path / "desktop_chat.png"
    shot.save(path)
    if os.environ.get("MOF_SCREENSHOT"):
        shot.save(os.environ["MOF_SCREENSHOT"])
    img = Image.open(path)
    assert img.size == (760, 600)
    colours = img.getcolors(maxcolors=1 << 20)
    assert len(colours) >= 30, len(colours)                    # text, widgets, anti-aliasing
    # the transcript area holds text: its pixels vary, and no single colour covers nearly all of it
    area = img.crop((10, 10, 700, 400))
    assert max(ImageStat.Stat(area.convert("L")).stddev) > 10
    top = max(c for c, _ in area.getcolors(maxcolors=1 << 20))
    assert top < 0.97 * area.width * area.height
    assert re.search(r"\d+ tokens · \d+\.\d tok/s", win.status_text())


def test_command_line_help_and_a_bad_model():
    ok = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "--model" in ok.stdout and "--int8" in ok.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--model", str(ROOT / "no-such.mof")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [f"desktop_chat.py: error: no bundle at {ROOT / 'no-such.mof'}: no such directory"]


@pytest.mark.tf
def test_a_t7_bundle_chats_in_the_window(root, tiny_t7_bundle):
    """The window knows no family: a T7 bundle (temperature expert, two transformer experts) streams
    its reply as mof.runtime generates it."""
    win = window(root, "--model", str(tiny_t7_bundle), "--int8", "--mode", "stream", "--form", "chat",
                 "--seed", "5", "--max-tokens", "40")
    win.entry.insert(0, "床前明月光，")
    win.send_button.invoke()
    pump(root, lambda: not win.busy)
    prompt = '{"conversations": [{"role": "user", "content": "床前明月光，"}, {"role": "assistant", "content": "'
    expect = "".join(Generator(win.model, prompt, SamplingConfig(max_tokens=40, seed=5, stop=('"}]}', '"}')),
                               mode="stream"))
    assert model_part(win.transcript_text()).rstrip("\n") == expect.rstrip("\n") and expect
    assert "int8" in win.status_text() and "chat form" in win.status_text()
