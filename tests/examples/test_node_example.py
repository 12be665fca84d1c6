"""examples/node/generate.js (onnxruntime-node, manifest.json alone) against mof.runtime, live:
the same greedy token ids in stream mode, fp32 and int8, across several refills."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mof.runtime import DEFAULT_BUNDLE, Generator, Model, SamplingConfig
from mof.runtime.bundle import file_record

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "examples" / "node"
SCRIPT = NODE_DIR / "generate.js"
HELDOUT = ROOT / "tests" / "fixtures" / "demo_ckpt" / "heldout.txt"

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


@pytest.fixture(scope="module")
def node_ready():
    """onnxruntime-node installed as package-lock.json pins it (npm ci, as .ci/run does)."""
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        npm = shutil.which("npm")
        assert npm, "npm is missing: install Node.js with npm, then: npm ci --prefix examples/node"
        proc = subprocess.run([npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"npm ci --prefix examples/node failed:\n{proc.stderr[-2000:]}"


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(int8: bool) -> Model:
        if int8 not in cache:
            cache[int8] = Model.load(DEFAULT_BUNDLE, int8=int8)
        return cache[int8]
    return get


def run_node(*args, timeout=120):
    return subprocess.run([NODE, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def node_greedy(prompt: str, n: int, int8: bool, bundle: Path = DEFAULT_BUNDLE, refill_every=None) -> dict:
    args = ["--model", bundle, "--prompt", prompt, "--max-new-tokens", n, "--ids"] + (["--int8"] if int8 else [])
    args += ["--refill-every", refill_every] if refill_every else []
    proc = run_node(*args)
    assert proc.returncode == 0, proc.stderr
    assert "tok/s" in proc.stderr
    return json.loads(proc.stdout)


def python_greedy(model: Model, prompt: str, n: int, refill_every=None) -> dict:
    """mof.runtime's own greedy stream decoding (temperature 0, no repetition penalty); the ids are
    the sampler's picks, recorded as the Generator makes them."""
    gen = Generator(model, prompt, SamplingConfig(temperature=0, repetition_penalty=1.0, max_tokens=n),
                    mode="stream", refill_every=refill_every)
    picked = []
    sample = gen.sampler.sample

    def recording(logits, recent):
        picked.append(sample(logits, recent))
        return picked[-1]
    gen.sampler.sample = recording
    text = "".join(gen)
    return {"ids": picked, "text": text, "refills": gen.stats.refills,
            "position": int(gen.state.position[0]), "refill_every": gen.decoder.refill_every}


def heldout(n: int) -> str:
    text = HELDOUT.read_text(encoding="utf-8")
    assert len(text) >= n
    return text[:n]


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_node_greedy_ids_equal_the_python_runtimes(node_ready, models, int8):
    model = models(int8)
    prompt = "床前明月光，"
    node = node_greedy(prompt, 48, int8)
    py = python_greedy(model, prompt, 48)
    assert node["prompt_ids"] == model.vocab.encode(prompt)
    assert node["graphs"] == (["step.int8.onnx", "chunk.int8.onnx"] if int8 else ["step.onnx", "chunk.onnx"])
    assert node["refill_every"] == py["refill_every"] == model.recommended_refill_every
    assert len(node["ids"]) == 48
    assert node["ids"] == py["ids"]
    assert node["text"] == py["text"]
    assert node["refills"] == py["refills"] >= 3       # the default policy refilled several times
    assert node["position"] == py["position"]          # the state ends in step with the text


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_node_follows_the_refill_rule_as_the_runtime_does(node_ready, models, int8):
    """Several refill periods, a prompt longer than the window: the same ids, the same number of
    refills, and no position at W or beyond."""
    model = models(int8)
    W = model.config.window
    for prompt, n, R in ((heldout(W + 25), 3 * W, 8), (heldout(7), 40, 1), (heldout(30), 2 * W, W)):
        node = node_greedy(prompt, n, int8, refill_every=R)
        py = python_greedy(model, prompt, n, refill_every=R)
        assert node["ids"] == py["ids"], R
        assert node["refills"] == py["refills"] and node["position"] == py["position"]
        assert node["max_position"] <= W
        assert node["prompt_ids"] == model.vocab.encode(prompt)


def test_node_encodes_characters_as_the_runtime_does(node_ready, models):
    """Code points, not UTF-16 units (the emoji is one unknown character); unknown -> unknown_id."""
    model = models(False)
    prompt = "床前😀明月Ωq光，"
    node = node_greedy(prompt, 16, False)
    assert node["prompt_ids"] == model.vocab.encode(prompt)
    assert len(node["prompt_ids"]) == len(prompt)
    assert model.vocab.unknown_id in node["prompt_ids"]
    assert node["ids"] == python_greedy(model, prompt, 16)["ids"]


def test_node_streams_text_and_reports_errors_in_one_line(node_ready, tmp_path):
    proc = run_node("--prompt", "春眠不觉晓，", "--max-new-tokens", "12")
    assert proc.returncode == 0, proc.stderr
    ids = node_greedy("春眠不觉晓，", 12, False)
    assert proc.stdout == ids["text"] + "\n"
    assert "12 tokens" in proc.stderr and "tok/s" in proc.stderr

    assert run_node("--help").returncode == 0
    bad = run_node("--model", tmp_path / "nope.mof")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        f"generate.js: error: {tmp_path / 'nope.mof'} is not a bundle directory"]

    # a tampered graph is refused before it is loaded (the manifest's sha256)
    copy = tmp_path / "copy.mof"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    data = bytearray((copy / "step.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "step.onnx").write_bytes(bytes(data))
    tampered = run_node("--model", copy, "--max-new-tokens", "2")
    assert tampered.returncode == 1 and "sha256" in tampered.stderr
    assert len(tampered.stderr.strip().splitlines()) == 1

    # no int8 graphs named in the manifest: a clear message
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    del manifest["graphs"]["step"]["int8"]
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    no_int8 = run_node("--model", copy, "--int8", "--no-verify", "--max-new-tokens", "2")
    assert no_int8.returncode == 1 and "has no int8 graphs" in no_int8.stderr


def test_node_feeds_back_what_the_runtime_feeds_back(node_ready, models, tmp_path):
    """The text is the source of truth: a generated token's string is re-encoded before it is read.
    The first greedy token A becomes the two-character entry "AA", and A alone is put at the last two
    ids (a duplicate: the last occurrence encodes). Reading A's id back, or one id per token, or the
    first occurrence, would each read something else."""
    prompt = "床前明月光，"
    first = python_greedy(models(False), prompt, 1)["ids"][0]
    vocab = json.loads((DEFAULT_BUNDLE / "vocab.json").read_text(encoding="utf-8"))
    a = vocab[first]
    V = len(vocab)
    assert a != "\u25a9" and first < V - 2 and not {vocab[-1], vocab[-2], a} & set(prompt)
    vocab[first], vocab[-2], vocab[-1] = a + a, a, a

    bundle = tmp_path / "dup.mof"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    data = json.dumps(vocab, ensure_ascii=False).encode("utf-8")
    (bundle / "vocab.json").write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["vocab.json"] = file_record(bundle / "vocab.json")
    manifest["vocab"]["duplicates"] = 1
    (bundle / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")

    model = Model.load(bundle)
    assert model.vocab.encode(a + a) == [V - 1, V - 1]
    py = python_greedy(model, prompt, 40)
    node = node_greedy(prompt, 40, False, bundle=bundle)
    assert py["ids"][0] == first and py["text"].startswith(a + a)
    assert node["ids"] == py["ids"] and node["text"] == py["text"]
    assert node["position"] == len(prompt) + len(py["text"])                 # characters read, not tokens


@pytest.mark.tf
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_node_runs_a_t7_bundle_as_the_runtime_does(node_ready, tiny_t7_bundle, int8):
    """A T7 bundle's state (temperature-expert GRU, two transformer experts' sums) is just the
    manifest's field list to generate.js: the same greedy ids across refills."""
    model = Model.load(tiny_t7_bundle, int8=int8)
    prompt = "AB一丁七万丈三上下不与丐丑"
    node = node_greedy(prompt, 30, int8, bundle=tiny_t7_bundle, refill_every=4)
    py = python_greedy(model, prompt, 30, refill_every=4)
    assert node["ids"] == py["ids"] and len(py["ids"]) == 30
    assert node["refills"] == py["refills"] >= 3 and node["position"] == py["position"]
