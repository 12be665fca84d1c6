"""mof-run's in-session commands and --transcript, through piped stdin (the same loop as a terminal)."""

import json

import pytest

from mof.runtime import Model, SamplingConfig
from mof.runtime.chat_loop import read_message, MultiLineUnclosed
from mof.runtime.chat_session import ChatSession


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Lines:
    def __init__(self, *lines):
        self.lines = list(lines)

    def read(self, continuation=False):
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


def test_multi_line_messages():
    assert read_message(Lines("你好")) == ("你好", False)
    assert read_message(Lines('"""一行"""')) == ("一行", True)
    assert read_message(Lines('"""', "一", "", "二", '"""')) == ("一\n\n二", True)
    assert read_message(Lines('"""一', '二"""')) == ("一\n二", True)
    with pytest.raises(MultiLineUnclosed):
        read_message(Lines('"""一', "二"))


def test_help_lists_every_command_with_its_words_in_one_column():
    from mof.runtime.chat_commands import HELP
    rows = [line for line in HELP.splitlines() if line.startswith("  /")]
    assert any(r.startswith("  /clear, [CLEAN] ") for r in rows) and len(rows) >= 9
    columns = {len(r) - len(r[2:].split("  ", 1)[1].lstrip()) for r in rows}
    assert len(columns) == 1, rows                       # each description starts in one column
    follow = [line for line in HELP.splitlines() if line.startswith("   ")]
    assert follow and {len(line) - len(line.lstrip()) for line in follow} == columns   # and so do its next lines


def test_set_mode_refill_change_the_next_replies(demo_bundle, tmp_path, mof_run):
    t = tmp_path / "t.jsonl"
    stdin = "/set temperature 0\n/set top-k 5\n/mode exact\n你好\n/mode stream\n/refill 4\n再见\n/show\n/bye\n没有读到\n"
    code, out, err = mof_run(["--max-tokens", "6", "--seed", "1", "--transcript", t], stdin)
    assert code == 0, err
    turns = [r for r in _records(t) if r["event"] == "turn"]
    assert [(r["user"], r["mode"], r["refill_every"]) for r in turns] == [("你好", "exact", None),
                                                                         ("再见", "stream", 4)]
    assert turns[0]["sampling"]["temperature"] == 0.0 and turns[0]["sampling"]["top_k"] == 5
    session = ChatSession(Model.load(demo_bundle), SamplingConfig(temperature=0.0, top_k=5, max_tokens=6,
                                                                  seed=1), "exact")
    replies = []
    for text, mode, r in (("你好", "exact", None), ("再见", "stream", 4)):
        session.set_decoding(mode, r)
        gen = session.turn(text)
        replies.append("".join(gen))
        session.finish(gen)
    assert [r["reply"] for r in turns] == replies and out.splitlines() == replies
    assert "mode       stream, refill every 4" in err and "temperature=0.0" in err and "top_k=5" in err


@pytest.mark.parametrize("line, words", [
    ("/set temperature -1", "/set temperature: expected a number >= 0"),
    ("/set top_p 2", "/set top_p: expected a number in (0, 1]"),
    ("/set warmth 1", "/set warmth: unknown setting"),
    ("/set temperature", "usage: /set NAME VALUE"),
    ("/mode fast", "usage: /mode stream|exact"),
    ("/refill 0", "/refill R must be an integer from 1 to the window W = 64, got 0"),
    ("/refill x", "usage: /refill R"),
    ("/frobnicate", "unknown command /frobnicate; /help lists the commands"),
    ("/load /nonexistent/chat.npz", "/nonexistent/chat.npz: no such file"),
])
def test_a_bad_command_is_one_line_the_chat_goes_on_and_the_exit_is_1(line, words, mof_run):
    code, out, err = mof_run(["--max-tokens", "3", "--seed", "0"], f"{line}\n你好\n")
    assert code == 1
    assert f"mof-run: error: {words}" in err and "Traceback" not in err
    assert len(out.splitlines()) == 1                  # the turn after it was still answered


def test_save_refuses_to_replace_and_load_continues(demo_bundle, tmp_path, mof_run):
    saved = tmp_path / "chat.npz"
    saved.write_bytes(b"keep me")
    common = ["--max-tokens", "5", "--seed", "2", "--mode", "stream"]
    code, _, err = mof_run(common, f"第一句\n/save {saved}\n")
    assert code == 1 and "exists; /save" in err and saved.read_bytes() == b"keep me"
    code, _, err = mof_run(common, f"第一句\n/save {saved} --force\n")
    assert code == 0 and "conversation saved to" in err
    code, out, err = mof_run(common, f"/load {saved}\n第二句\n")
    assert code == 0, err
    session = ChatSession(Model.load(demo_bundle), SamplingConfig(max_tokens=5, seed=2), "stream")
    for text in ("第一句", "第二句"):
        gen = session.turn(text)
        reply = "".join(gen)
        session.finish(gen)
    assert out == reply.replace("\n", "\\n") + "\n"


def test_clear_and_clean_forget_the_conversation(demo_bundle, tmp_path, mof_run):
    t = tmp_path / "t.jsonl"
    code, out, err = mof_run(["--max-tokens", "4", "--seed", "0", "--transcript", t],
                             "你好\n/clear\n你好\n[CLEAN]\n你好\n")
    assert code == 0 and err.count("history cleared") == 2
    replies = out.splitlines()
    assert replies[0] == replies[1] == replies[2]          # each 你好 starts a new conversation
    assert [r["event"] for r in _records(t)] == ["turn", "clear", "turn", "clear", "turn"]


def test_raw_form_refuses_save_and_has_nothing_to_clear(tmp_path, mof_run):
    code, _, err = mof_run(["--form", "raw", "--max-tokens", "2"], f"/clear\n/save {tmp_path / 's.npz'}\n")
    assert "raw form keeps no history: each message" in err
    assert code == 1 and "no conversation to save" in err and not (tmp_path / "s.npz").exists()


def test_transcript_appends_with_prompt_and_refuses_a_directory(tmp_path, mof_run):
    t = tmp_path / "t.jsonl"
    t.write_text('{"event": "earlier"}\n', encoding="utf-8")
    code, out, err = mof_run(["--prompt", "你好", "--max-tokens", "4", "--seed", "0", "--transcript", t])
    assert code == 0, err
    first, second = _records(t)
    assert first == {"event": "earlier"}                   # appended to, never replaced
    assert second["user"] == "你好" and second["reply"] + "\n" == out and second["tokens"] == 4
    code, _, err = mof_run(["--prompt", "x", "--transcript", tmp_path])
    assert code == 1 and "is a directory" in err


def test_help_lists_every_command(mof_run):
    code, _, err = mof_run([], "/help\n")
    assert code == 0
    for command in ("/show", "/set NAME VALUE", "/mode stream|exact", "/refill R", "/clear, [CLEAN]",
                    "/save FILE", "/load FILE", "/bye", '"""'):
        assert command in err, command
