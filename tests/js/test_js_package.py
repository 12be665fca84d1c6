"""The JavaScript package (js/) against mof.runtime, live: tests/js/write_fixture.py records what the
Python runtime samples on the demo bundle now (ids, the uniform draws behind them, replies, refills,
saved conversations, logits); node's test runner (js/test/*.test.js) must reproduce it with
onnxruntime-node (ids equal in every case) and measures onnxruntime-web against it. Then the
conversations the JS package saved are resumed here by ChatSession.load: the same second turn.

Needs Node.js and `npm ci --prefix js` (.ci/run does it; onnxruntime-node's install script is not
needed: js/.npmrc)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mof.runtime import DEFAULT_BUNDLE, Model, SamplingConfig
from mof.runtime.chat_session import ChatSession

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
NODE = shutil.which("node")
MISSING = [m for m in ("onnxruntime-node", "onnxruntime-web") if not (JS / "node_modules" / m).is_dir()]

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js is not installed (the JS package's tests need node >= 18)"),
    pytest.mark.skipif(bool(MISSING), reason=f"js/node_modules lacks {', '.join(MISSING)}: run  npm ci --prefix js"),
]
sys.path.insert(0, str(Path(__file__).parent))
import write_fixture  # noqa: E402


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("js") / "fixture.json"
    assert write_fixture.main([str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def node_run(fixture_file) -> dict:
    """node --test over the package's tests, once: its output and the conversations it saved."""
    saved = fixture_file.parent / "saved"
    saved.mkdir()
    files = sorted(str(p.relative_to(JS)) for p in (JS / "test").glob("*.test.js"))
    env = {**os.environ, "MOF_FIXTURE": str(fixture_file), "MOF_JS_OUT": str(saved)}
    proc = subprocess.run([NODE, "--test", "--test-reporter=tap", *files], cwd=JS, env=env,
                          capture_output=True, text=True, timeout=300)
    return {"proc": proc, "saved": saved, "fixture": json.loads(fixture_file.read_text(encoding="utf-8"))}


def test_the_js_package_reproduces_the_python_runtime(node_run):
    proc = node_run["proc"]
    counts = {k: int(v) for k, v in re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", proc.stdout, re.M)}
    failures = "\n".join(line for line in proc.stdout.splitlines() if line.startswith(("not ok", "  error")))
    assert proc.returncode == 0 and counts.get("fail") == 0, f"{failures}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    cases = node_run["fixture"]["cases"]
    left_out = len(node_run["fixture"]["skipped"])      # a precision this onnxruntime cannot compare
    assert counts.get("skipped") == left_out and counts.get("cancelled") == 0, counts
    assert counts["pass"] >= len(cases) + 10, counts       # every case ran, and the rest
    for measured in re.findall(r"^# (onnxruntime-web .*)$", proc.stdout, re.M):
        print(measured)


def test_python_resumes_the_conversations_the_js_package_saved(node_run):
    cases = [c for c in node_run["fixture"]["cases"] if c.get("saved_after_first_turn")]
    assert cases
    models = {}
    for c in cases:
        path = node_run["saved"] / f"{c['name']}-{c['precision']}.npz"
        assert path.is_file(), f"the JS test did not save {path.name}"
        model = models.setdefault(c["precision"], Model.load(DEFAULT_BUNDLE, precision=c["precision"]))
        sampling = SamplingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in c["sampling"].items()})
        session = ChatSession(model, sampling, mode=c["mode"], form=c["form"], refill_every=c["refill_every"])
        session.load(path)
        if c["mode"] == "stream":      # the state itself came back, not a re-read from zero
            assert session.state is not None
            assert int(session.state.position[0]) == c["turns"][0]["position"]
        want = c["turns"][1]
        gen = session.turn(want["user"])
        assert gen.prompt == want["prompt"]
        assert "".join(gen) == want["output"], c["name"]
        if c["mode"] == "stream":
            assert gen.decoder.refill_every == (c["refill_every"] or model.recommended_refill_every)
