"""examples/node/chat.mjs — a terminal chat on the mof JavaScript package (js/) and onnxruntime-node —
against mof.runtime, live: the same replies turn after turn (piped, one line per turn), in every form
and mode it is asked for, and conversations saved by either side resumed by the other."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mof.runtime import DEFAULT_BUNDLE, Model, SamplingConfig, read_manifest
from mof.runtime.chat_session import ChatSession

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "examples" / "node"
SCRIPT = NODE_DIR / "chat.mjs"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js is not installed"),
    pytest.mark.skipif(not (NODE_DIR / "node_modules" / "mof-js").exists()
                       or not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
                       reason="examples/node is not installed: run  npm ci --prefix examples/node"),
]


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(precision="fp32") -> Model:
        if precision not in cache:
            cache[precision] = Model.load(DEFAULT_BUNDLE, precision=precision)
        return cache[precision]
    return get


def chat(*args, stdin: str = "", timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, str(SCRIPT), *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def python_replies(model, sampling, texts, mode=None, form=None, refill_every=None, session=None):
    session = session or ChatSession(model, sampling, mode=mode, form=form, refill_every=refill_every)
    out = []
    for text in texts:
        if text == "/clear":
            session.clear()
            continue
        gen = session.continue_text(text) if session.conversation.form == "raw" else session.turn(text)
        out.append("".join(gen))
        session.finish(gen)
    return out, session


def test_piped_turns_get_the_python_runtimes_replies(models):
    texts = ["你好", "你叫什么名字？", "/clear", "你好"]
    proc = chat("--seed", 2, "--temperature", 0.5, "--max-tokens", 40, stdin="\n".join(texts) + "\n")
    assert proc.returncode == 0, proc.stderr
    want, _ = python_replies(models(), SamplingConfig(seed=2, temperature=0.5, max_tokens=40), texts)
    assert proc.stdout.splitlines() == want
    assert want[0] == want[2]                                       # /clear: the first turn again
    err = proc.stderr.splitlines()
    assert err[0].startswith("chat.mjs: t6-demo.mof, stream mode, refill every 16, chat form, fp32")
    assert sum("tok/s" in line for line in err) == 3


@pytest.mark.parametrize("precision,mode,form,flags,options", [
    ("fp32", "exact", "instruct", ["--top-k", 20, "--min-p", 0.05, "--seed", 3],
     dict(top_k=20, min_p=0.05, seed=3)),
    ("int8", "stream", "raw", ["--refill-every", 5, "--temperature", 0, "--stop", "。", "--max-tokens", 60],
     dict(temperature=0, stop=("。",), max_tokens=60)),
    ("int4", "stream", "pretrain", ["--penalty-mode", "sign-aware", "--repetition-penalty", 1.3, "--ban", "的了",
                                    "--seed", 4, "--max-tokens", 30],
     dict(penalty_mode="sign-aware", repetition_penalty=1.3, ban=("的", "了"), seed=4, max_tokens=30)),
])
def test_every_form_mode_precision_and_sampling_flag(models, precision, mode, form, flags, options):
    import onnxruntime
    if onnxruntime.__version__ not in read_manifest(DEFAULT_BUNDLE).onnxruntime_record(precision).get("reproduces", []):
        pytest.skip(f"onnxruntime {onnxruntime.__version__} is not recorded to reproduce the demo's {precision} "
                    "logits, so its tokens cannot be compared with onnxruntime-node's")
    prompt = "床前明月光，" if form == "raw" else "写一首诗"
    refill = 5 if "--refill-every" in flags else None
    precision_flag = [] if precision == "fp32" else [f"--{precision}"]
    proc = chat("--prompt", prompt, *precision_flag, "--mode", mode, "--form", form, *flags)
    assert proc.returncode == 0, proc.stderr
    want, _ = python_replies(models(precision), SamplingConfig(**options), [prompt], mode=mode, form=form,
                             refill_every=refill)
    assert proc.stdout == want[0] + "\n"


def test_conversations_saved_by_either_side_resume_on_the_other(models, tmp_path):
    sampling = SamplingConfig(seed=5, max_tokens=30)
    want, _ = python_replies(models(), sampling, ["你好", "今天天气怎么样？"])

    ours = tmp_path / "node.npz"
    first = chat("--prompt", "你好", "--seed", 5, "--max-tokens", 30, "--save-state", ours)
    assert first.returncode == 0 and first.stdout == want[0] + "\n", first.stderr
    session = ChatSession(models(), sampling)
    session.load(ours)                                              # mof.runtime resumes chat.mjs's
    assert session.state is not None
    assert python_replies(models(), sampling, ["今天天气怎么样？"], session=session)[0] == [want[1]]

    theirs = tmp_path / "python.npz"
    _, py = python_replies(models(), sampling, ["你好"])
    py.save(theirs)
    second = chat("--prompt", "今天天气怎么样？", "--seed", 5, "--max-tokens", 30, "--load-state", theirs)
    assert second.returncode == 0 and second.stdout == want[1] + "\n", second.stderr


def test_mistakes_are_one_line(tmp_path):
    for args, message in ((["--model", tmp_path / "nope.mof"], f"no bundle at {tmp_path / 'nope.mof'}: no such directory"),
                          (["--mode", "fast"], "mode must be one of stream, exact, got 'fast'"),
                          (["--temperature", "hot"], '--temperature: expected a number, got "hot"'),
                          (["--load-state", tmp_path / "none.npz"], f"{tmp_path / 'none.npz'} does not exist")):
        proc = chat(*args, stdin="你好\n")
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1] == f"chat.mjs: error: {message}"
    assert chat("--help").returncode == 0
