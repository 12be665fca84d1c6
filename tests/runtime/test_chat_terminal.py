"""mof-run in a real pseudo-terminal (pexpect), as a person types: editing keys, Up for an earlier
line (also from an earlier run), a paste of three lines, \"\"\" input, /set without leaving, Ctrl-C at
the prompt. What reached the model is read back from --transcript."""

import json
import os
import sys

import pytest

from mof.runtime import Model, SamplingConfig
from mof.runtime.chat_session import ChatSession

pexpect = pytest.importorskip("pexpect", reason="pexpect is in the [test] extra")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pexpect.spawn needs a POSIX pty")

READY = "\x1b[?2004h"        # prompt_toolkit turns bracketed paste on as each prompt starts
PROMPT_DONE = "\x1b[?2004l"  # ... and off as it returns the line typed
LEFT, UP, BACKSPACE, HOME, CTRL_C = "\x1b[D", "\x1b[A", "\x7f", "\x1b[H", "\x03"
PASTE = "\x1b[200~{}\x1b[201~"


def spawn(tmp_path, *args):
    # No cursor-position requests: pexpect is no terminal emulator to answer them (a real terminal
    # does; tmux in test_chat_tmux.py).
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, ["-m", "mof.runtime.cli", "--history", str(tmp_path / "history"),
                                           "--transcript", str(tmp_path / "t.jsonl"), *map(str, args)],
                          env=env, encoding="utf-8", timeout=30, dimensions=(24, 120))
    child.expect_exact(READY)
    return child


def send_line(child, *keys):
    for k in keys:
        child.send(k)
    child.send("\r")


def turn(child, *keys):
    send_line(child, *keys)
    child.expect(r"\[\d+ tokens, prefill")
    child.expect_exact(READY)


def leave(child):
    send_line(child, "/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def turns(tmp_path):
    lines = (tmp_path / "t.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "turn"]


def test_edit_recall_paste_and_quotes(demo_bundle, tmp_path):
    child = spawn(tmp_path, "--max-tokens", "4", "--seed", "0")
    turn(child, "好", LEFT, "你")                              # 好, Left, 你 -> 你好
    turn(child, UP)                                            # the previous line again
    turn(child, "吗你好", HOME, BACKSPACE, "\x1b[3~")         # Home, Backspace (nothing), Delete: 你好
    turn(child, "你好吗", BACKSPACE)
    turn(child, PASTE.format("第一行\n第二行\n第三行"))         # a paste of three lines = one message
    send_line(child, '"""春眠不觉晓，')
    child.expect_exact(READY)
    child.expect_exact("...")                                 # the continuation prompt
    send_line(child, "处处闻啼鸟。")
    child.expect_exact(READY)
    child.expect_exact("...")
    turn(child, '夜来风雨声"""')
    leave(child)
    users = [t["user"] for t in turns(tmp_path)]
    assert users == ["你好", "你好", "你好", "你好", "第一行\n第二行\n第三行",
                     "春眠不觉晓，\n处处闻啼鸟。\n夜来风雨声"]
    assert not any("\x1b" in u or "^[" in u for u in users)


def test_history_is_kept_across_runs(demo_bundle, tmp_path):
    child = spawn(tmp_path, "--max-tokens", "2", "--seed", "0")
    turn(child, "床前明月光")
    leave(child)
    assert "床前明月光" in (tmp_path / "history").read_text(encoding="utf-8")
    child = spawn(tmp_path, "--max-tokens", "2", "--seed", "0")
    turn(child, UP, UP)                      # /bye, then the line typed in the first run
    leave(child)
    assert [t["user"] for t in turns(tmp_path)] == ["床前明月光", "床前明月光"]


def test_set_temperature_without_leaving(demo_bundle, tmp_path):
    """/set temperature 0 changes the next reply: it is the greedy one (checked against a
    ChatSession), and /show says so."""
    child = spawn(tmp_path, "--max-tokens", "12", "--seed", "3", "--mode", "exact")
    send_line(child, "/set temperature 0")
    child.expect_exact("temperature = 0.0")
    child.expect_exact(READY)
    turn(child, "你好")
    send_line(child, "/show")
    child.expect(r"sampling   temperature=0\.0, top_p=0\.8")
    child.expect_exact(READY)
    leave(child)
    (got,) = turns(tmp_path)
    session = ChatSession(Model.load(demo_bundle), SamplingConfig(temperature=0.0, max_tokens=12, seed=3), "exact")
    gen = session.turn("你好")
    assert got["reply"] == "".join(gen) and got["sampling"]["temperature"] == 0.0 and got["mode"] == "exact"


def test_a_mistyped_command_at_a_terminal_does_not_fail_the_run(demo_bundle, tmp_path):
    """Piped input: a bad command fails the run (exit 1, test_chat_commands.py). At a terminal the
    person saw the error and went on, so /bye leaves with 0."""
    child = spawn(tmp_path, "--max-tokens", "2", "--seed", "0")
    for line, error in (("/frob", "unknown command /frob"), ("/set foo 1", "/set foo: unknown setting")):
        send_line(child, line)
        child.expect_exact(error)
        child.expect_exact(READY)
    turn(child, "你好")
    leave(child)                                           # exit status 0


def test_ctrl_c_at_the_prompt_says_how_to_leave(demo_bundle, tmp_path):
    child = spawn(tmp_path, "--max-tokens", "2", "--seed", "0")
    child.send("半行")
    child.send(CTRL_C)                                     # clears the line, does not leave
    child.expect_exact("to leave: /bye or Ctrl-D")
    child.expect_exact(READY)
    turn(child, "你好")
    child.send(CTRL_C)
    child.expect_exact("to leave")
    child.expect_exact(READY)
    child.sendeof()                                        # Ctrl-D at an empty prompt: leave
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [t["user"] for t in turns(tmp_path)] == ["你好"]


def test_the_raw_form_banner_promises_no_history(demo_bundle, tmp_path):
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, ["-m", "mof.runtime.cli", "--form", "raw", "--no-history"],
                          env=env, encoding="utf-8", timeout=30)
    child.expect_exact("raw form: each message is continued on its own (no history)")
    banner = child.readline()
    child.expect_exact(READY)
    assert "[CLEAN]" not in banner and "/clear" not in banner
    send_line(child, "/clear")
    child.expect_exact("the raw form keeps no history")
    child.expect_exact(READY)
    leave(child)


def test_ctrl_c_stops_a_long_reply_and_the_chat_goes_on(demo_bundle, tmp_path):
    """The raw form has no stop string: 4,000 tokens take seconds; Ctrl-C ends the reply at once
    and the next prompt comes back."""
    child = spawn(tmp_path, "--form", "raw", "--max-tokens", "4000", "--seed", "0", "--no-history")
    send_line(child, "床前明月光，")
    # the reply is streaming: its first character after the prompt ends (prompt_toolkit turns
    # bracketed paste off as it returns the line), not a later run of characters, which a busy
    # machine could let the 4,000-token reply pass before Ctrl-C lands
    child.expect_exact(PROMPT_DONE)
    child.expect("[\u4e00-\u9fff]")
    child.send(CTRL_C)
    child.expect_exact("[stopped]")
    child.expect(r"\[\d+ tokens, prefill")
    child.expect_exact(READY)
    leave(child)
    (got,) = turns(tmp_path)
    assert got["stopped_by"] == "interrupted" and 0 < got["tokens"] < 4000
