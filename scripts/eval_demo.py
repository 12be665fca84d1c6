"""Measure the demo model's chat on its held-out dialogues: the figures in docs/demo-model.md.

    python scripts/eval_demo.py [--model runtime/demo/t6-demo.mof] [--ckpt tests/fixtures/demo_ckpt]

Runtime only (numpy + onnxruntime). On the held-out material written by scripts/train_demo.py
(user turns never trained on):

1. Perplexity of the held-out replies, teacher-forced: each held-out conversation as `mof-run`
   sends it, scored only on the reply's characters and the closing `"}` the stop string needs
   (exact mode, and stream mode with the bundle's recommended refill period), fp32 and int8.
2. Replies generated to every held-out user turn as the first turn of a chat (`mof-run`'s
   defaults: temperature 0.68, top-p 0.8, repetition penalty 1.2; seed = the turn's index) with
   at most --max-tokens tokens: the share that end by the stop string, the share that are
   mostly CJK (at least half of the characters, punctuation included), and both — in stream and
   exact mode, fp32 and int8.
3. With --corpus WHEEL (the chatterbot-corpus wheel train_demo.py fetched): how many of those
   replies are a training reply, verbatim (recalled whole rather than composed).
4. --transcripts: a few seeded chats, as `mof-run` prints them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLOSE = '"}'                     # what ends a reply: the first of the chat form's stop strings


def is_cjk(c: str) -> bool:
    return ("\u4e00" <= c <= "\u9fff") or ("\u3000" <= c <= "\u303f") or ("\uff00" <= c <= "\uffef")


def cjk_share(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(map(is_cjk, chars)) / len(chars) if chars else 0.0


def reply_perplexity(model, conversations, mode: str) -> tuple[float, int]:
    """exp(mean NLL) of the replies' characters and their closing '"}', teacher-forced."""
    from mof.measure.accuracy import exact_logits, perplexity, stream_logits
    from mof.runtime.chat import Conversation
    nll, n = 0.0, 0
    for pairs in conversations:
        conv = Conversation("chat")
        for user, reply in pairs[:-1]:
            conv.prompt(user)
            conv.add_reply(reply)
        user, reply = pairs[-1]
        prompt = conv.prompt(user)
        ids = np.asarray(model.vocab.encode(prompt + reply + CLOSE), np.int32)
        feed, targets = ids[:-1], ids[1:]
        logits = exact_logits(model, feed) if mode == "exact" else stream_logits(model, feed)
        first = len(prompt) - 1                           # logits[first:] predict reply + '"}'
        scored = len(targets) - first
        nll += np.log(perplexity(logits[first:], targets[first:])) * scored
        n += scored
    return float(np.exp(nll / n)), n


def replies(model, users, mode: str, max_tokens: int) -> list[tuple[str, bool]]:
    from mof.runtime import SamplingConfig
    from mof.runtime.chat_session import ChatSession
    out = []
    for i, user in enumerate(users):
        session = ChatSession(model, SamplingConfig(max_tokens=max_tokens, seed=i), mode, form="chat")
        gen = session.turn(user)
        text = "".join(gen)
        out.append((text, gen.stats.stopped_by == "stop"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="bundle (default: the shipped demo)")
    ap.add_argument("--ckpt", type=Path, default=ROOT / "tests/fixtures/demo_ckpt",
                    help="folder with heldout_dialogues.json")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--corpus", type=Path, metavar="WHEEL",
                    help="chatterbot-corpus wheel: also count replies that are training replies, verbatim")
    ap.add_argument("--transcripts", nargs="*", default=None, metavar="TURN",
                    help="also print seeded chats (seed 0) with these user turns, int8 stream")
    args = ap.parse_args()

    from mof.runtime import DEFAULT_BUNDLE, Model
    bundle = args.model or DEFAULT_BUNDLE
    held = json.loads((args.ckpt / "heldout_dialogues.json").read_text(encoding="utf-8"))
    users = [c[-1][0] for c in held]
    trained = None
    if args.corpus:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from train_demo import read_dialogues, split_dialogues
        trained = {reply for _, reply in split_dialogues(read_dialogues(args.corpus))[0]}
    report = {"bundle": str(bundle), "heldout_conversations": len(held), "rows": []}
    print(f"{len(held)} held-out user turns; bundle {bundle}")
    print("precision  mode    reply ppl (chars)   ends by stop   mostly CJK   both"
          + ("   training reply" if trained else ""))
    for int8 in (False, True):
        model = Model.load(bundle, int8=int8)
        for mode in ("stream", "exact"):
            ppl, n = reply_perplexity(model, held, mode)
            got = replies(model, users, mode, args.max_tokens)
            stop = np.mean([s for _, s in got])
            cjk = np.mean([cjk_share(t) >= 0.5 for t, _ in got])
            both = np.mean([s and cjk_share(t) >= 0.5 for t, s in got])
            row = {"precision": model.precision, "mode": mode, "reply_ppl": ppl, "scored_chars": n,
                   "ends_by_stop": float(stop), "mostly_cjk": float(cjk), "both": float(both),
                   "refill_every": model.recommended_refill_every if mode == "stream" else None,
                   "samples": [{"user": u, "reply": t, "stopped": s} for u, (t, s) in zip(users, got)]}
            verbatim = ""
            if trained:
                row["training_replies"] = sum(t in trained for t, _ in got)
                verbatim = f"   {row['training_replies']} of {len(got)}"
            report["rows"].append(row)
            print(f"{model.precision:9}  {mode:6}  {ppl:9.1f} ({n:4d})      {stop:6.1%}      {cjk:6.1%}    "
                  f"{both:6.1%}{verbatim}", flush=True)
    if args.transcripts:
        from mof.runtime import SamplingConfig
        from mof.runtime.chat_session import ChatSession
        model = Model.load(bundle, int8=True)
        session = ChatSession(model, SamplingConfig(seed=0), form="chat")
        for turn in args.transcripts:
            gen = session.turn(turn)
            print(f"> {turn}\n{''.join(gen)}")
            session.finish(gen)
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
