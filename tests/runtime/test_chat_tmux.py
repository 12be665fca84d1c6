"""mof-run in tmux, a real terminal emulator (it answers prompt_toolkit's cursor-position requests
and draws the screen): what a person sees after editing keys is the edited line, CJK widths and all."""

import os
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None or sys.platform == "win32",
                                reason="needs tmux (.ci/run installs it)")


def tmux(*args, check=True):
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, timeout=20,
                          check=check).stdout


SOCKET = f"mof-test-chat-{os.getpid()}"      # a tmux server of this test's own


def screen_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        text = tmux("capture-pane", "-p", "-t", "chat")
        if predicate(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_edited_line_on_screen_and_sent(demo_bundle, tmp_path):
    transcript = tmp_path / "t.jsonl"
    cmd = (f"{sys.executable} -m mof.runtime.cli --no-history --seed 0 --max-tokens 4 "
           f"--transcript {transcript}; echo EXIT=$?; sleep 30")
    tmux("new-session", "-d", "-s", "chat", "-x", "100", "-y", "20", "-e", "LANG=C.UTF-8", cmd)
    try:
        assert "/help lists" in screen_until(lambda s: "/help lists" in s)
        tmux("send-keys", "-t", "chat", "-l", "好")
        tmux("send-keys", "-t", "chat", "Left")
        tmux("send-keys", "-t", "chat", "-l", "你")
        shown = screen_until(lambda s: "> 你好" in s)
        assert "> 你好" in shown and "^[" not in shown
        tmux("send-keys", "-t", "chat", "Enter")
        screen_until(lambda s: "tokens, prefill" in s)
        tmux("send-keys", "-t", "chat", "Up")
        shown = screen_until(lambda s: s.count("> 你好") == 2)
        assert shown.count("> 你好") == 2                     # Up brought the line back
        tmux("send-keys", "-t", "chat", "C-u")               # clear it, then leave
        tmux("send-keys", "-t", "chat", "-l", "/bye")
        tmux("send-keys", "-t", "chat", "Enter")
        assert "EXIT=0" in screen_until(lambda s: "EXIT=" in s)
    finally:
        tmux("kill-server", check=False)
    assert '"user": "你好"' in transcript.read_text(encoding="utf-8")
