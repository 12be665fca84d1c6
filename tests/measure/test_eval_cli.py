"""mof-eval on the shipped demo bundle, in a process that cannot import TensorFlow or onnx."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mof.runtime import DEFAULT_BUNDLE, Model
from mof.measure.plain import PlainDecoder

HELDOUT = Path(__file__).resolve().parents[1] / "fixtures" / "demo_ckpt" / "heldout.txt"
BLOCK = ("import sys\n"
         "for m in ('tensorflow', 'tf_keras', 'keras', 'tf2onnx', 'xiaothink', 'onnx'):\n"
         "    sys.modules[m] = None\n"
         "from mof.measure.eval_cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")


def mof_eval(*args):
    return subprocess.run([sys.executable, "-c", BLOCK, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_mof_eval_prints_the_policy_table_and_writes_json(tmp_path):
    text = tmp_path / "tips.txt"
    text.write_text(HELDOUT.read_text(encoding="utf-8")[3000:3200], encoding="utf-8")
    out = tmp_path / "r.json"
    proc = mof_eval(DEFAULT_BUNDLE, "--text", text, "--tokens", 120, "--json", out)
    assert proc.returncode == 0, proc.stderr
    for policy in ("plain", "R=32", "R=16", "R=8", "R=4", "exact"):
        assert f"\n{policy} " in "\n" + proc.stdout, policy
    report = json.loads(out.read_text(encoding="utf-8"))["policies"]
    assert report["tokens"] == 120 and report["window"] == 64
    rows = {r["policy"]: r for r in report["policies"]}
    assert rows["exact"]["mean_kl"] == 0.0 and rows["exact"]["perplexity_change"] == 0.0
    # the plain row really is the stream decoder without refills: recompute its perplexity
    model = Model.load(DEFAULT_BUNDLE)
    ids = model.vocab.encode(text.read_text(encoding="utf-8")[:121])
    dec, nll = PlainDecoder(model), 0.0
    for p in range(120):
        logits = dec.feed([ids[p]]).astype(np.float64)
        nll += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[ids[p + 1]]
    assert abs(np.exp(nll / 120) / rows["plain"]["perplexity"] - 1) < 1e-4
    # more refills, closer to exact
    assert rows["R=4"]["mean_kl"] < rows["R=32"]["mean_kl"] < rows["plain"]["mean_kl"]


def test_mof_eval_bad_text_is_one_line_and_exit_1(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    for args in (["--text", tmp_path / "missing.txt"], ["--text", empty]):
        proc = mof_eval(DEFAULT_BUNDLE, *args)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("mof-eval: error: ")


@pytest.mark.tf
def test_mof_eval_on_a_t7_bundle(tiny_t7_bundle, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(HELDOUT.read_text(encoding="utf-8")[:80], encoding="utf-8")
    out = tmp_path / "r.json"
    proc = mof_eval(tiny_t7_bundle, "--text", text, "--tokens", 60, "--int8", "--json", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = {r["policy"]: r for r in report["policies"]["policies"]}
    assert rows["exact"]["mean_kl"] == 0.0 and {"plain", "R=6", "exact"} <= set(rows)
    assert "int8" in proc.stdout and "exact" in proc.stdout


def _command(stdout):
    import shlex
    line = next(line for line in stdout.splitlines() if line.startswith("to decode this way: "))
    return shlex.split(line.removeprefix("to decode this way: ").split("   (")[0])


def test_mof_eval_prints_the_command_that_applies_its_recommendation(fp32_bundle, tmp_path):
    """The printed command is a valid mof-run command line that decodes as the table recommends,
    with the bundle and precision that were measured."""
    from mof.runtime.cli import build_parser
    text = tmp_path / "t.txt"
    text.write_text(HELDOUT.read_text(encoding="utf-8")[:400], encoding="utf-8")
    out = tmp_path / "r.json"
    for bundle, extra in ((DEFAULT_BUNDLE, ["--int8"]), (fp32_bundle, [])):
        proc = mof_eval(bundle, "--text", text, "--tokens", 160, "--json", out, *extra)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(out.read_text(encoding="utf-8"))
        table = report["policies"]
        command = _command(proc.stdout)
        assert command[0] == "mof-run" and report["apply"]["command"] == command
        args = build_parser().parse_args(command[1:])
        assert args.mode == table["recommended_mode"]
        if args.mode == "stream":
            assert args.refill_every == table["recommended_refill_every"]
        assert args.precision == ("int8" if extra else None)
        assert args.model.resolve() == Path(bundle).resolve()        # the default bundle: no --model
        assert ("--model" in command) == (bundle != DEFAULT_BUNDLE)
        assert "warning" not in proc.stderr


def test_mof_eval_on_a_short_text_warns_and_recommends_nothing(tmp_path):
    text = tmp_path / "two.txt"
    text.write_text("床前", encoding="utf-8")
    out = tmp_path / "r.json"
    proc = mof_eval(DEFAULT_BUNDLE, "--text", text, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "recommended" not in proc.stdout and "to decode this way" not in proc.stdout
    assert "\nexact " in proc.stdout                           # the figures are still shown
    assert ("mof-eval: warning: 1 characters measured, too few for a recommendation: need at least "
            "128 = 2 x W") in proc.stderr and "give a --text of at least 129 characters" in proc.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["apply"]["command"] is None
    # a long enough text measured on too few characters: the fix is --tokens
    text.write_text(HELDOUT.read_text(encoding="utf-8")[:300], encoding="utf-8")
    proc = mof_eval(DEFAULT_BUNDLE, "--text", text, "--tokens", 127)
    assert proc.returncode == 0 and "pass --tokens 128 or more" in proc.stderr
    assert "to decode this way" not in proc.stdout
    proc = mof_eval(DEFAULT_BUNDLE, "--text", text, "--tokens", 128)
    assert proc.returncode == 0 and "to decode this way: mof-run --mode " in proc.stdout
