"""mof-run as a user meets it: --prompt, piped chat, [CLEAN], saved conversations, bad flags."""

import io
import subprocess
import sys

import pytest

from mof.runtime import Model, SamplingConfig
from mof.runtime.cli import main
from mof.runtime.session import ChatSession



def _run(args, stdin=""):
    proc = subprocess.run([sys.executable, "-m", "mof.runtime.cli", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_prompt_streams_the_continuation_and_a_summary(demo_bundle):
    args = ["--model", demo_bundle, "--prompt", "床前明月光，", "--max-tokens", "15", "--seed", "4",
            "--mode", "stream", "--temperature", "1.0"]
    code, out, err = _run(args)
    assert code == 0, err
    assert len(out) == 16 and out.endswith("\n")
    assert "15 tokens" in err and "mode stream" in err and "fp32" in err
    assert _run(args)[1] == out                          # same seed, same text
    from mof.runtime import Generator
    gen = Generator(Model.load(demo_bundle), "床前明月光，", SamplingConfig(temperature=1.0, top_p=0.8,
                    repetition_penalty=1.2, max_tokens=15, seed=4), mode="stream")
    assert "".join(gen) + "\n" == out                     # the flags map onto the runtime's config


def test_piped_chat_one_line_per_turn_and_clean(demo_bundle):
    code, out, err = _run(["--model", demo_bundle, "--max-tokens", "8", "--seed", "1"],
                          stdin="你好\n[CLEAN]\n再见\n")
    assert code == 0, err
    assert len(out.splitlines()) == 2          # newlines inside a reply are written as \\n
    assert "history cleared" in err


@pytest.mark.parametrize("flag, value, words", [
    ("--temperature", "-1", "--temperature"), ("--top-p", "0", "--top-p"), ("--top-p", "1.5", "--top-p"),
    ("--top-k", "-2", "--top-k"), ("--max-tokens", "0", "--max-tokens"), ("--min-p", "1", "--min-p"),
    ("--repetition-penalty", "0", "--repetition-penalty"), ("--mode", "fast", "--mode"),
])
def test_invalid_values_are_one_line_usage_errors(flag, value, words, capsys):
    with pytest.raises(SystemExit) as e:
        main([flag, value, "--prompt", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_missing_bundle_and_missing_int8(fp32_bundle, tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nope"), "--prompt", "x"]) == 1
    assert main(["--model", str(fp32_bundle), "--int8", "--prompt", "x"]) == 1
    err = capsys.readouterr().err
    assert "is not a directory" in err and "mof-quantize" in err and "Traceback" not in err


@pytest.mark.parametrize("mode", ["stream", "exact"])
def test_saved_conversation_continues_exactly(demo_bundle, tmp_path, mode):
    saved = tmp_path / "chat.npz"
    common = ["--model", demo_bundle, "--max-tokens", "6", "--seed", "2", "--mode", mode,
              "--temperature", "1.0"]
    assert _run([*common, "--save-state", saved], stdin="第一句\n")[0] == 0
    code, out2, err = _run([*common, "--load-state", saved], stdin="第二句\n")
    assert code == 0, err
    session = ChatSession(Model.load(demo_bundle), SamplingConfig(temperature=1.0, top_p=0.8,
                          repetition_penalty=1.2, max_tokens=6, seed=2), mode)
    for text in ("第一句", "第二句"):
        gen = session.turn(text)
        reply = "".join(gen)
        session.finish(gen)
    assert out2 == reply.replace("\n", "\\n") + "\n"
    assert saved.stat().st_size < 8192


def test_ctrl_c_stops_the_reply_and_keeps_the_history(demo_bundle, monkeypatch, capsys):
    import mof.runtime.cli as cli
    real = cli._stream_out
    calls = []

    def interrupted_once(gen, one_line=False):
        calls.append(1)
        if len(calls) == 1:
            next(iter(gen))
            raise KeyboardInterrupt
        real(gen, one_line)

    monkeypatch.setattr(cli, "_stream_out", interrupted_once)
    monkeypatch.setattr(sys, "stdin", io.StringIO("你好\n再来\n"))
    assert main(["--model", str(demo_bundle), "--max-tokens", "5", "--seed", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == " [stopped]" and len(out) == 2


def test_bad_saved_state(demo_bundle, tmp_path, capsys):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    monkeypatch_stdin = io.StringIO("")
    sys_stdin, sys.stdin = sys.stdin, monkeypatch_stdin
    try:
        assert main(["--model", str(demo_bundle), "--load-state", str(bad)]) == 1
    finally:
        sys.stdin = sys_stdin
    assert "not a saved mof conversation" in capsys.readouterr().err
