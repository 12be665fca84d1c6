"""mof-run as a user meets it: --prompt, piped chat, [CLEAN], saved conversations, bad flags."""

import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from mof.runtime import Model, SamplingConfig
from mof.runtime.cli import build_parser, main
from mof.runtime.cli_common import sampling_from_args
from mof.runtime.errors import BundleError, MofError
from mof.runtime.chat_session import ChatSession


def _run(args, stdin=""):
    proc = subprocess.run([sys.executable, "-m", "mof.runtime.cli", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_prompt_streams_the_continuation_and_a_summary(demo_bundle):
    args = ["--model", demo_bundle, "--form", "raw", "--prompt", "床前明月光，", "--max-tokens", "15",
            "--seed", "4", "--mode", "stream", "--temperature", "1.0"]     # raw: no stop string
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
    assert f"no bundle at {tmp_path / 'nope'}: no such directory" in err and "mof-quantize" in err and "Traceback" not in err


@pytest.mark.parametrize("mode", ["stream", "exact"])
def test_saved_conversation_continues_exactly(demo_bundle, tmp_path, mode):
    saved = tmp_path / "chat.npz"
    common = ["--model", demo_bundle, "--max-tokens", "6", "--seed", "2", "--mode", mode,
              "--temperature", "1.0", "--form", "chat"]
    assert _run([*common, "--save-state", saved], stdin="第一句\n")[0] == 0
    code, out2, err = _run([*common, "--load-state", saved], stdin="第二句\n")
    assert code == 0, err
    session = ChatSession(Model.load(demo_bundle), SamplingConfig(temperature=1.0, top_p=0.8,
                          repetition_penalty=1.2, max_tokens=6, seed=2), mode, form="chat")
    for text in ("第一句", "第二句"):
        gen = session.turn(text)
        reply = "".join(gen)
        session.finish(gen)
    assert out2 == reply.replace("\n", "\\n") + "\n"
    assert saved.stat().st_size < 8192


def test_ctrl_c_stops_the_reply_and_keeps_the_history(demo_bundle, monkeypatch, capsys):
    import mof.runtime.chat_loop as loop
    real = loop.stream_out
    calls = []

    def interrupted_once(gen, one_line=False):
        calls.append(1)
        if len(calls) == 1:
            next(iter(gen))
            raise KeyboardInterrupt
        real(gen, one_line)

    monkeypatch.setattr(loop, "stream_out", interrupted_once)
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
        assert main(["--model", str(demo_bundle), "--form", "chat", "--load-state", str(bad)]) == 1
    finally:
        sys.stdin = sys_stdin
    assert "not a saved mof conversation" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["stream", "exact"])
def test_prompt_continues_a_saved_conversation(demo_bundle, tmp_path, mode, mof_run):
    """--prompt is one turn: with --load-state it is the saved conversation's next turn."""
    saved = tmp_path / "chat.npz"
    common = ["--model", demo_bundle, "--max-tokens", "6", "--seed", "2", "--mode", mode,
              "--temperature", "1.0", "--form", "chat"]
    assert mof_run([*common, "--prompt", "第一句", "--save-state", saved])[0] == 0
    code, out, err = mof_run([*common, "--prompt", "第二句", "--load-state", saved, "--save-state", saved])
    assert code == 0, err
    session = ChatSession(Model.load(demo_bundle), SamplingConfig(temperature=1.0, max_tokens=6, seed=2),
                          mode, form="chat")
    for text in ("第一句", "第二句"):
        gen = session.turn(text)
        reply = "".join(gen)
        session.finish(gen)
    assert out == reply + "\n"
    fresh = ChatSession(Model.load(demo_bundle), session.sampling, mode, form="chat")
    fresh.load(saved)                                   # saved again after the second turn
    assert fresh.conversation.history == session.conversation.history


def test_prompt_with_a_bad_saved_state_is_refused(demo_bundle, tmp_path, mof_run):
    bad = tmp_path / "x.npz"
    bad.write_bytes(os.urandom(3000))
    code, out, err = mof_run(["--model", demo_bundle, "--form", "chat", "--prompt", "x", "--load-state", bad])
    assert code == 1 and out == ""
    assert "not a saved mof conversation" in err and len(err.strip().splitlines()) == 2


def test_the_raw_form_has_no_conversation_to_save(demo_bundle, tmp_path, capsys):
    for flag in ("--load-state", "--save-state"):
        assert main(["--model", str(demo_bundle), "--form", "raw", "--prompt", "x", flag,
                     str(tmp_path / "s.npz")]) == 1
        assert "raw form keeps no history" in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()


def _cjk(text):
    return sum("\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef"
               for c in text)


def test_the_demo_chats_in_its_own_form_from_the_first_line(demo_bundle, mof_run):
    """No flags: the bundle's form (chat for the demo): 你好 gets a Chinese reply that ends by the
    stop string on its own, well before --max-tokens (256)."""
    for extra in ([], ["--int8"]):
        code, out, err = mof_run([*extra, "--seed", "0", "--prompt", "你好"])
        assert code == 0, err
        assert "chat form" in err
        reply = out.rstrip("\n")
        tokens = int(re.search(r"\[(\d+) tokens", err).group(1))
        assert reply and tokens < 256, (reply, err)          # ended by '"}', not by the token limit
        assert '"}' not in reply and _cjk(reply) >= len(reply) / 2, reply


def test_the_demo_still_continues_poems_in_the_raw_form(demo_bundle, mof_run):
    code, out, err = mof_run(["--int8", "--seed", "0", "--max-tokens", "24", "--form", "raw"],
                             stdin="床前明月光，\n")
    assert code == 0, err
    assert "raw form" in err
    reply = out.rstrip("\n").replace("\\n", "\n")
    assert len(reply) == 24                                   # raw: no stop string, the full 24
    assert _cjk(reply) >= len(reply) / 2, reply
    assert not any(c.isascii() and c.isalpha() for c in reply), reply     # no template residue


def test_a_bundle_without_a_form_or_with_a_bad_one_is_refused(fp32_bundle, tmp_path):
    copy = tmp_path / "b.mof"
    shutil.copytree(fp32_bundle, copy)
    m = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    for form, said in ((None, "form None"), ("poem", "form 'poem'")):
        m["form"] = form
        (copy / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
        with pytest.raises(BundleError, match=f"manifest {said} is not one of chat, instruct"):
            Model.load(copy)


def test_sampling_defaults_are_samplingconfigs():
    assert sampling_from_args(build_parser().parse_args([])) == SamplingConfig()
    args = build_parser().parse_args(["--temperature", "0", "--ban", "ab", "--ban", "c", "--stop", "。"])
    assert sampling_from_args(args) == SamplingConfig(temperature=0.0, ban=("a", "b", "c"), stop=("。",))


def test_window_is_the_models_own_not_a_change_to_a_loaded_one(demo_bundle, capsys):
    base = Model.load(demo_bundle)
    narrow = Model.load(demo_bundle, window=16)
    assert narrow.config.window == 16 and base.config.window == 64
    assert narrow.manifest.config.window == 64        # the bundle's own figure is untouched
    ids = list(range(1, 40))
    assert (narrow.exact_logits(ids) == base.exact_logits(ids[-16:])).all()
    with pytest.raises(MofError, match="position table"):
        Model.load(demo_bundle, window=513)
    assert main(["--window", "513", "--prompt", "x"]) == 1
    assert "window must be between 1 and" in capsys.readouterr().err


def test_chinese_text_through_pipes_without_a_utf8_locale(demo_bundle):
    """As on Windows, where a pipe gets the ANSI code page: stdin and stdout are read and written as UTF-8."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    proc = subprocess.run([sys.executable, "-m", "mof.runtime.cli", "--seed", "0", "--max-tokens", "8"],
                          input="床前明月光，\n".encode("utf-8"), capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    out = proc.stdout.decode("utf-8")
    assert len(out.rstrip("\n")) >= 8 and any("\u4e00" <= c <= "\u9fff" for c in out)


@pytest.mark.tf
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_a_t7_bundle_chats_saves_and_continues(tiny_t7_bundle, tmp_path, int8):
    """mof-run knows no family: a T7 conversation (its state has temp_h) is saved and continued
    exactly as in one session."""
    saved = tmp_path / "chat.npz"
    common = ["--model", tiny_t7_bundle, "--max-tokens", "8", "--seed", "2", "--mode", "stream",
              "--refill-every", "4", "--temperature", "1.0", "--form", "chat"] + (["--int8"] if int8 else [])
    code, _, err = _run([*common, "--save-state", saved], stdin="AB\n")
    assert code == 0, err
    code, out2, err = _run([*common, "--load-state", saved], stdin="CD\n")
    assert code == 0, err
    session = ChatSession(Model.load(tiny_t7_bundle, int8=int8), SamplingConfig(
        temperature=1.0, top_p=0.8, repetition_penalty=1.2, max_tokens=8, seed=2), "stream", form="chat",
        refill_every=4)
    for text in ("AB", "CD"):
        gen = session.turn(text)
        reply = "".join(gen)
        session.finish(gen)
    assert out2 == reply.replace("\n", "\\n") + "\n" and "temp_h" in session.state.names


def test_int4_runs_and_says_it_missed_the_gates(mof_run):
    """The demo's int4 graphs were kept below the accuracy gates (mof-quantize --int4
    --allow-degraded): mof-run runs them and says so, with the recorded figures (under an onnxruntime
    older than int4's kernels need, it refuses them in one line: docs/embedding.md)."""
    from mof.runtime.ort_compat import KERNELS, current, version
    code, out, err = mof_run(["--int4", "--seed", "0", "--max-tokens", "8", "--prompt", "你好"])
    if version(current()) < version(KERNELS["matmulnbits-int4"].requires):
        assert code == 1 and not out and err.count("\n") == 1 and "need onnxruntime >=" in err
    else:
        assert code == 0 and out.strip()
        assert "int4 was kept below the accuracy gates" in err and "top-1" in err
    code, out, err = mof_run(["--int8", "--seed", "0", "--max-tokens", "8", "--prompt", "你好"])
    assert code == 0 and "below the accuracy gates" not in err


def test_self_check_runs_first_and_a_failed_one_stops(mof_run, tmp_path):
    code, out, err = mof_run(["--self-check", "--int8", "--seed", "0", "--max-tokens", "4", "--prompt", "你好"])
    assert code == 0 and out.strip()
    assert err.splitlines()[0].startswith("mof-run: self-check: int8  ✓ max |Δlogit|")
    from mof.runtime import DEFAULT_BUNDLE
    from mof.runtime.selfcheck import SECTION
    bundle = tmp_path / "demo.mof"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    m[SECTION]["precisions"]["fp32"]["mean"] = m[SECTION]["precisions"]["int8"]["mean"]   # other references
    (bundle / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    code, out, err = mof_run(["--model", bundle, "--self-check", "--prompt", "你好"])
    assert code == 1 and not out and err.count("\n") == 1
    assert "self-check failed: fp32  ✗ max |Δlogit|" in err
