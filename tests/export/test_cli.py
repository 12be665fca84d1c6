"""mof-export as a user meets it: progress, --force, atomicity, and one-line errors for bad input."""

import json
import shutil

import pytest

from mof.export.cli import main
from mof.export.pipeline import STAGES, stage_count
from mof.runtime.bundle import verify_bundle
from mof.runtime.vocab import Vocabulary

pytestmark = pytest.mark.tf

SIZES = ["--heads", "4", "--trans-window", "6", "--window", "12", "--eval-tokens", "32"]
FLAGS = SIZES + ["--no-full", "--no-window"]    # the graphs decoding runs: what these tests look at


def _copy_ckpt(tiny_ckpt, dest):
    shutil.copytree(tiny_ckpt.parent, dest)
    return dest


def _one_error_line(err):
    lines = [l for l in err.splitlines() if l.startswith("mof-export: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_export_force_and_progress_in_a_real_process(tiny_ckpt, tmp_path, run_cli, capsys):
    out = tmp_path / "b.mof"
    code, stdout, stderr = run_cli([tiny_ckpt.parent, "-o", out, *SIZES, "--no-full"])
    assert code == 0, stderr
    assert stdout.strip() == str(out.absolute())
    for i, stage in enumerate(STAGES, start=1):          # every stage, numbered out of the pipeline's count
        assert f"[{i}/{stage_count(False)}] {stage} " in stderr and f"{stage} done in" in stderr
    assert f"[{len(STAGES) + 1}/" not in stderr
    manifest = verify_bundle(out)
    assert (out / "window.onnx").is_file() and not (out / "full.onnx").exists()     # --no-full, window kept
    v = manifest["validation"]
    cases = len(v["cases"]) + len(v["step"]["cases"]) + len(v["chunk"]["cases"]) + len(v["decode"]["cases"])
    assert len(v["cases"]) == 2 * 2 * 6        # graphs (window, chunk) x batches x lengths
    assert {c["graph"] for c in v["cases"]} == {"window", "chunk"}
    assert len(v["decode"]["cases"]) == 2 * 6 and v["decode"]["max_abs_diff"] == 0.0   # refill, step x lengths
    assert stderr.count("✓") == cases and "✗" not in stderr
    assert "recommended: " in stderr and "stream policies vs exact" in stderr
    assert "oneDNN" not in stderr and "cuda" not in stderr.lower()
    assert list(manifest["self_check"]["precisions"]) == ["fp32"]        # the self-check's references
    from mof.runtime import Model
    assert Model.load(out, self_check=True).self_check_result.max_abs_diff == 0.0
    before = manifest["files"]

    assert main([str(tiny_ckpt), "-o", str(out), *FLAGS]) == 1
    assert "--force" in _one_error_line(capsys.readouterr().err)
    assert verify_bundle(out)["files"] == before

    # --force replaces the bundle as a whole: the window graph it no longer asks for is gone too
    assert main([str(tiny_ckpt), "-o", str(out), *FLAGS, "--force", "-q"]) == 0
    assert set(verify_bundle(out)["files"]) == set(before) - {"window.onnx"}
    assert not (out / "window.onnx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["b.mof"]


def test_mistakes_fail_before_tensorflow_loads(tiny_ckpt, tmp_path):
    """A missing checkpoint, an existing output without --force and a vocabulary that does not
    parse: one line, exit 1, and TensorFlow never imported (in a fresh interpreter)."""
    import subprocess
    import sys
    existing = tmp_path / "there.mof"
    existing.mkdir()
    (existing / "keep").write_text("mine")
    bad_vocab = tmp_path / "vocab.txt"
    bad_vocab.write_text("not a list")
    code = ("import sys; from mof.export.cli import main; rc = main(sys.argv[1:]); "
            "print('tensorflow' in sys.modules); sys.exit(rc)")
    for argv, said in (([tmp_path / "nothing"], "checkpoint not found"),
                       ([tiny_ckpt, "-o", existing], "--force"),
                       ([tiny_ckpt, "-o", tmp_path / "b.mof", "--vocab", bad_vocab], "vocab")):
        proc = subprocess.run([sys.executable, "-c", code, *map(str, argv), *FLAGS], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 1 and proc.stdout.strip() == "False", (argv, proc.stdout, proc.stderr)
        assert said in _one_error_line(proc.stderr)
    assert (existing / "keep").read_text() == "mine" and not (tmp_path / "b.mof").exists()


def test_failure_mid_write_leaves_no_bundle_and_no_litter(tiny_ckpt, tmp_path, monkeypatch, capsys):
    def disk_full(self):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Vocabulary, "to_json", disk_full)
    assert main([str(tiny_ckpt), "-o", str(tmp_path / "b.mof"), *FLAGS]) == 1
    assert "No space left" in _one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_malicious_vocab_is_rejected_and_never_runs(tiny_ckpt, tmp_path, capsys):
    ck = _copy_ckpt(tiny_ckpt, tmp_path / "ck")
    marker = tmp_path / "pwned"
    (ck / "vocab.txt").write_text(f"__import__('os').system('touch {marker}')")
    assert main([str(ck), "-o", str(tmp_path / "b.mof"), *FLAGS]) == 1
    assert "vocab" in _one_error_line(capsys.readouterr().err)
    assert not marker.exists() and not (tmp_path / "b.mof").exists()


def test_vocab_size_must_match_the_embedding(tiny_ckpt, tmp_path, capsys):
    ck = _copy_ckpt(tiny_ckpt, tmp_path / "ck")
    (ck / "vocab.txt").write_text(repr([chr(0x4E00 + i) for i in range(59)]))
    assert main([str(ck), "-o", str(tmp_path / "b.mof"), *FLAGS]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "59 entries" in line and "token_emb/embeddings has 60 rows" in line


def test_truncated_data_file(tiny_ckpt, tmp_path, capsys):
    ck = _copy_ckpt(tiny_ckpt, tmp_path / "ck")
    data = next(ck.glob("ckpt.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert main([str(ck), "-o", str(tmp_path / "b.mof"), *FLAGS]) == 1
    assert "checkpoint" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "b.mof").exists()


def test_wrong_model_type(tiny_ckpt, tmp_path, capsys):
    assert main([str(tiny_ckpt), "-o", str(tmp_path / "b.mof"), "--model-type", "t6_tiny"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "t6_tiny" in line and "token_emb/embeddings" in line and "[60, 16]" in line


def test_unknown_model_type_and_bad_flags_are_usage_errors(tmp_path, capsys):
    for argv in (["x", "--model-type", "t9"], ["x", "--heads", "0"], ["x", "--atol", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), *FLAGS]) == 1
    assert "checkpoint not found" in _one_error_line(capsys.readouterr().err)


def test_duplicated_vocab_exports_with_a_warning_and_encodes_as_the_reference(
        ckpt_factory, tmp_path, capsys):
    from synthetic import demo_vocab
    from mof_testing import tiny_config
    vocab = demo_vocab(60)
    vocab[10] = vocab[20] = "雨"          # two duplicates of one character
    prefix = ckpt_factory(tiny_config(), vocab=vocab)
    out = tmp_path / "b.mof"
    assert main([str(prefix), "-o", str(out), *FLAGS]) == 0
    assert "duplicated" in capsys.readouterr().err
    tokens = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert tokens == vocab
    char2idx = {u: i for i, u in enumerate(vocab)}
    text = "雨天A" + "\u0000"
    assert Vocabulary.from_tokens(tokens).encode(text) == [char2idx.get(c, char2idx["▩"]) for c in text]
    assert verify_bundle(out)["vocab"]["duplicates"] == 1
