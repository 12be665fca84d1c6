"""Write what mof.runtime does on the demo bundle, for the JavaScript package's tests to reproduce
(js/test/*.test.js read it): per case (precision, mode, R, form, sampling options, turns) the token
ids Python samples, the uniform draws its RandomState made for them, the reply, how it stopped, the
refills, the final position; a conversation saved after its first turn (mof-run --save-state's .npz,
base64) with what the second turn then gives; and the exact and stream logits of a few windows
(the JS side measures onnxruntime-web's difference from them).

    python tests/js/write_fixture.py OUT.json [--bundle DIR]

The JS decoder, given the same draws (or greedy), must pick the same ids. Nothing here is
hard-coded: every expected value comes from running mof.runtime now."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np

from mof.runtime import DEFAULT_BUNDLE, Model, SamplingConfig
from mof.runtime.decoder import StreamDecoder
from mof.runtime.chat_session import ChatSession

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "tests" / "fixtures" / "demo_ckpt" / "heldout.txt"

# name, precisions, mode, R (None: the bundle's), form, sampling options, turns (user texts)
CASES = [
    ("chat-stream", ("fp32", "int8", "int4"), "stream", None, "chat",
     dict(seed=2, temperature=0.5, max_tokens=40), ["你好", "你叫什么名字？"]),
    ("chat-exact", ("fp32", "int8", "int4"), "exact", None, "chat",
     dict(seed=5, max_tokens=30), ["你好", "今天天气怎么样？"]),
    ("instruct-stream-R5-topk-minp", ("fp32",), "stream", 5, "instruct",
     dict(seed=3, top_k=20, min_p=0.05, max_tokens=40), ["写一首诗", "再写一首"]),
    ("pretrain-stream-RW-signaware-ban", ("fp32",), "stream", 64, "pretrain",
     dict(seed=4, repetition_penalty=1.3, penalty_mode="sign-aware", penalty_window=16, ban=("的", "了"),
          max_tokens=40), ["春天来了"]),
    ("raw-stream-greedy-long-stop", ("fp32", "int8", "int4"), "stream", None, "raw",
     dict(temperature=0, repetition_penalty=1.0, max_tokens=80, stop=("。。",)), ["HELDOUT:90"]),
    ("raw-exact-plain", ("fp32",), "exact", None, "raw",
     dict(seed=7, temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_tokens=50), ["床前明月光，"]),
    ("raw-stream-R1-topp-stop", ("fp32", "int8"), "stream", 1, "raw",
     dict(seed=11, temperature=0.8, top_p=0.9, max_tokens=60, stop=("。",)), ["白日依山尽，"]),
    ("chat-stream-greedy-penalty", ("fp32",), "stream", 8, "chat",
     dict(temperature=0, max_tokens=40), ["你好", "你好"]),
]


def user_text(text: str) -> str:
    if text.startswith("HELDOUT:"):
        return HELDOUT.read_text(encoding="utf-8")[: int(text.split(":")[1])]
    return text


def recorded_turn(session: ChatSession, text: str, raw: bool) -> dict:
    """One turn, with the sampler's picks and the uniform draws behind them recorded."""
    gen = session.continue_text(text) if raw else session.turn(text)
    prompt = gen.prompt
    ids, draws = [], []
    sample, rng = gen.sampler.sample, gen.sampler.rng

    class Recording:
        def random_sample(self):
            draws.append(float(rng.random_sample()))
            return draws[-1]

    def sampling(logits, recent):
        ids.append(int(sample(logits, recent)))
        return ids[-1]
    gen.sampler.rng = Recording()
    gen.sampler.sample = sampling
    output = "".join(gen)
    session.finish(gen)
    return {"user": text, "prompt": prompt, "ids": ids, "draws": draws, "output": output,
            "stopped_by": gen.stats.stopped_by, "refills": gen.stats.refills,
            "position": None if session.state is None else int(session.state.position[0])}


def run_case(model: Model, name, mode, R, form, options, turns, tmp: Path) -> dict:
    sampling = SamplingConfig(**options)
    session = ChatSession(model, sampling, mode=mode, form=form, refill_every=R)
    texts = [user_text(t) for t in turns]
    out = {"name": name, "precision": model.precision, "mode": mode, "refill_every": R, "form": form,
           "sampling": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
           "turns": []}
    for i, text in enumerate(texts):
        out["turns"].append(recorded_turn(session, text, form == "raw"))
        if i == 0 and len(texts) > 1 and form != "raw":
            save = tmp / f"{name}-{model.precision}.npz"
            session.save(save)
            out["saved_after_first_turn"] = base64.b64encode(save.read_bytes()).decode("ascii")
    return out


def logits_cases(model: Model) -> list[dict]:
    """Exact logits of three windows, and the stream logits after a refill and a step."""
    text = HELDOUT.read_text(encoding="utf-8")
    ids = model.vocab.encode(text[:100])
    W = model.config.window
    out = [{"kind": "exact", "ids": ids[:n][-W:], "logits": model.exact_logits(ids[:n])[0].tolist()}
           for n in (1, 17, 100)]
    dec = StreamDecoder(model, 16)
    refill = dec.feed(ids[:20]).tolist()
    out.append({"kind": "stream", "feeds": [ids[:20]], "refill_every": 16, "logits": refill})
    step = dec.feed(ids[20:21]).tolist()
    out.append({"kind": "stream", "feeds": [ids[:20], ids[20:21]], "refill_every": 16, "logits": step})
    return out


def broken_bundles(bundle: Path, where: Path) -> list[dict]:
    """Damaged copies of the bundle and the one-line error Model.load gives for each."""
    import shutil
    from mof.runtime.errors import MofError
    where.mkdir(parents=True, exist_ok=True)

    def copy(name: str) -> Path:
        out = where / name
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(bundle, out)
        return out

    def edit_manifest(path: Path, change) -> None:
        m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        change(m)
        (path / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")

    def flip(path: Path, name: str) -> None:
        data = bytearray((path / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / name).write_bytes(bytes(data))

    cases = []
    (where / "a-file.mof").write_text("not a directory")
    (where / "empty.mof").mkdir(exist_ok=True)
    cases += [(where / "nope.mof", "fp32"), (where / "a-file.mof", "fp32"), (where / "empty.mof", "fp32")]
    p = copy("format.mof")
    edit_manifest(p, lambda m: m.update(format="something-else"))
    cases.append((p, "fp32"))
    p = copy("version.mof")
    edit_manifest(p, lambda m: m.update(format_version=3))
    cases.append((p, "fp32"))
    p = copy("format1.mof")                           # refused, naming the upgrade command
    edit_manifest(p, lambda m: m.update(format_version=1))
    cases.append((p, "fp32"))
    p = copy("tampered.mof")
    flip(p, "decode.onnx")
    cases.append((p, "fp32"))
    p = copy("tampered-vocab.mof")
    flip(p, "vocab.json")
    cases.append((p, "fp32"))
    p = copy("truncated.mof")
    (p / "weights.fp32.bin").write_bytes((p / "weights.fp32.bin").read_bytes()[:-8])
    cases.append((p, "fp32"))
    p = copy("missing.mof")
    (p / "chunk.int4.onnx").unlink()                  # a file fp32 decoding never reads: still checked
    cases.append((p, "fp32"))
    p = copy("unsafe.mof")
    edit_manifest(p, lambda m: m["files"].update({"../evil": {"sha256": "0" * 64, "bytes": 1}}))
    cases.append((p, "fp32"))
    p = copy("no-int8.mof")
    edit_manifest(p, lambda m: [g.pop("int8", None) for g in m["graphs"].values()])
    cases.append((p, "int8"))
    out = []
    for path, precision in cases:
        try:
            Model.load(path, precision=precision)
        except MofError as e:
            out.append({"path": str(path), "precision": precision, "error": str(e)})
        else:
            raise AssertionError(f"{path} loaded")
    return out


def js_onnxruntime_version() -> str | None:
    """The onnxruntime-node the JS tests run on (js/node_modules), None if not installed."""
    package = ROOT / "js" / "node_modules" / "onnxruntime-node" / "package.json"
    return json.loads(package.read_text(encoding="utf-8"))["version"] if package.is_file() else None


def comparable_precisions(bundle: Path) -> tuple[list[str], dict]:
    """The precisions whose logits both this onnxruntime and the JS tests' onnxruntime-node are recorded
    to reproduce (the bundle's own "onnxruntime" section), and why each other one is left out: their
    ids are compared token for token, which a kernel computing otherwise would break."""
    import onnxruntime
    from mof.runtime.bundle import read_manifest
    manifest = read_manifest(bundle)
    ours, theirs = onnxruntime.__version__, js_onnxruntime_version()
    keep, skipped = [], {}
    for precision in ("fp32", "int8", "int4"):
        reproduces = manifest.onnxruntime_record(precision).get("reproduces", [])
        missing = [v for v in (ours, theirs) if v and v not in reproduces]
        if not manifest.has_precision(precision):
            skipped[precision] = "the bundle has no such graphs"
        elif missing:
            skipped[precision] = f"onnxruntime {', '.join(missing)} not recorded to reproduce its logits"
        else:
            keep.append(precision)
    return keep, skipped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the fixture file to write (JSON)")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle directory (default: the demo)")
    p.add_argument("--cases", nargs="+", metavar="NAME", help="only these cases (default: all)")
    p.add_argument("--precision", nargs="+", choices=("fp32", "int8", "int4"), help="only these precisions")
    p.add_argument("--max-tokens", type=int, help="cap every case's max_tokens (a large bundle)")
    p.add_argument("--no-broken", action="store_true", help="write no broken copies of the bundle")
    args = p.parse_args(argv)
    tmp = args.out.resolve().parent
    cases, logits = [], {}
    precisions, skipped = comparable_precisions(args.bundle)
    for precision, why in skipped.items():
        print(f"{args.out}: no {precision} cases: {why}", file=sys.stderr)
    for precision in precisions:
        if args.precision and precision not in args.precision:
            continue
        model = Model.load(args.bundle, precision=precision)
        for name, precisions, mode, R, form, options, turns in CASES:
            if precision in precisions and (not args.cases or name in args.cases):
                if args.max_tokens:
                    options = {**options, "max_tokens": min(options.get("max_tokens", 256), args.max_tokens)}
                R = min(R, model.config.window) if R else R
                cases.append(run_case(model, name, mode, R, form, options, turns, tmp))
        logits[precision] = logits_cases(model)
    import onnxruntime
    fixture = {"bundle": str(args.bundle.resolve()), "onnxruntime": onnxruntime.__version__,
               "numpy": np.__version__, "cases": cases, "logits": logits, "skipped": skipped,
               "broken": [] if args.no_broken else broken_bundles(args.bundle, tmp / "broken")}
    args.out.write_text(json.dumps(fixture, ensure_ascii=False), encoding="utf-8")
    print(f"{args.out}: {len(cases)} cases, {sum(len(c['turns']) for c in cases)} turns, "
          f"{sum(len(t['ids']) for c in cases for t in c['turns'])} tokens", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
