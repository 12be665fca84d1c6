"""Train the small demo T6 shipped with mof: Tang and Song poems, Chinese fortunes and Chinese dialogues.

    python scripts/train_demo.py --out tests/fixtures/demo_ckpt [--steps 8000] [--minutes 50] [--seed 0]

Data, fetched with the ordinary package tools (nothing of either package is imported or run):

- plain text: the Debian package fortunes-zh (`apt-get download fortunes-zh`, unpacked with
  dpkg-deb; ANSI colour codes and the `%` separators are stripped). Every 20th entry is held out.
- dialogues: the Python package chatterbot-corpus (BSD-3-Clause; `pip download --no-deps
  chatterbot-corpus`), whose wheel holds Chinese dialogues as YAML under
  chatterbot_corpus/data/chinese/ (17 topics), read from the zip with yaml.safe_load. A
  conversation's statements alternate user / assistant; an unanswered last statement is dropped.
  Every 10th distinct user turn (in order of first appearance) is held out with all its replies,
  so no held-out user turn is ever trained on.

Each dialogue is rendered in xiaothink's chat form exactly as `mof-run` (mof.runtime.chat, which
reproduces QianyanModel.chat byte for byte) sends it, and closed with the characters its stop
string expects:
``{"conversations": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}``
— every training pair alone (single turn), every conversation's trained prefix (multi-turn), and
random chains of 2–3 trained pairs (later turns). Records are joined by newlines (JSON lines).
A fixed share of every batch (--dialogue-share) is cut from the dialogue stream, the rest from
the fortunes: the dialogues are oversampled so the format is learned.

The vocabulary is '▩' plus the fortunes' characters seen at least --min-count times plus every
character of the dialogue corpus and the template (held-out replies included, so none of them
reads as '▩'). The network is xiaothink's own T6 code (mof.export.keras_model), trained with the
usual next-character loss at every position (the pieces of tests/helpers/synthetic.py's trainer), the
learning rate on a cosine from 2e-3 to 2e-4 over the run's progress. The run ends after --steps
steps or --minutes of wall time, whichever comes first; progress is the larger of the two
fractions, so a run cut short by a busy machine still ends on the low learning rate. With the
steps reached first, a seed reproduces the run. Written next to the checkpoint (vocab.txt in
xiaothink's format): config.json, train_log.json (what ran), heldout.txt (the calibration text:
held-out dialogues and fortunes, alternating), heldout_chat.txt (held-out dialogues, one rendered
record per line), heldout_poems.txt (held-out fortunes) and heldout_dialogues.json (the held-out
pairs, for measuring replies).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

FILES = ("tang300", "song100", "chinese")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CORPUS_DIR = "chatterbot_corpus/data/chinese/"


def fetch_fortunes(workdir: Path) -> dict[str, str]:
    subprocess.run(["apt-get", "download", "fortunes-zh"], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL)
    deb = next(workdir.glob("fortunes-zh_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "x")], check=True)
    base = workdir / "x/usr/share/games/fortunes"
    return {name: (base / name).read_text(encoding="utf-8") for name in FILES}


def entries_of(raw: str) -> list[str]:
    text = ANSI.sub("", raw)
    return [e.strip("\n") for e in re.split(r"^%\s*$", text, flags=re.M) if e.strip()]


def fetch_dialogues(workdir: Path) -> list[list[tuple[str, str]]]:
    """The Chinese conversations of chatterbot-corpus as lists of (user, assistant) pairs."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                    "chatterbot-corpus", "-d", str(workdir)], check=True)
    return read_dialogues(next(workdir.glob("chatterbot_corpus-*.whl")))


def read_dialogues(wheel: Path) -> list[list[tuple[str, str]]]:
    """The conversations in the wheel's chinese/*.yml (read as data, never imported)."""
    import yaml
    conversations = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(n for n in z.namelist() if n.startswith(CORPUS_DIR) and n.endswith(".yml")):
            for conv in yaml.safe_load(z.read(name).decode("utf-8"))["conversations"]:
                turns = [str(s).strip() for s in conv]
                pairs = [(turns[i], turns[i + 1]) for i in range(0, len(turns) - 1, 2)]
                if pairs:
                    conversations.append(pairs)
    return conversations


def render(pairs) -> str:
    """One record: the conversation as `mof-run` sends its last turn, plus that reply and the close."""
    from mof.runtime.chat import Conversation
    conv = Conversation("chat")
    text = ""
    for user, reply in pairs:
        text = conv.prompt(user) + reply + '"}]}'
        conv.add_reply(reply)
    return text


def split_dialogues(conversations, every: int = 10, offset: int = 3):
    """Hold out every ``every``-th distinct user turn. Returns (training records, held-out
    conversations): a held-out pair keeps the trained pairs before it as its history."""
    users = list(dict.fromkeys(u for conv in conversations for u, _ in conv))
    held_users = {u for i, u in enumerate(users) if i % every == offset}
    train_pairs, train_convs, held = [], [], []
    for conv in conversations:
        prefix = []
        for pair in conv:
            if pair[0] in held_users:
                held.append(prefix + [pair])
                break
            prefix.append(pair)
            train_pairs.append(pair)
        if len(prefix) > 1:
            train_convs.append(prefix)
    return train_pairs, train_convs, held


def dialogue_records(train_pairs, train_convs, rng, chains: int) -> list[str]:
    records = [render([p]) for p in train_pairs] + [render(c) for c in train_convs]
    for _ in range(chains):
        k = int(rng.integers(2, 4))
        records.append(render([train_pairs[i] for i in rng.choice(len(train_pairs), k, replace=False)]))
    rng.shuffle(records)
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True,
                    help="folder for ckpt.*, vocab.txt, config.json and the held-out files")
    ap.add_argument("--steps", type=int, default=8000, help="training steps (default 8000)")
    ap.add_argument("--minutes", type=float, default=50,
                    help="wall-time budget; the run ends at whichever of steps and minutes comes first "
                         "(default 50)")
    ap.add_argument("--dialogue-share", type=float, default=0.35,
                    help="share of each batch's windows cut from the dialogues (default 0.35)")
    ap.add_argument("--chains", type=int, default=600,
                    help="random multi-turn chains of trained pairs added to the dialogues (default 600)")
    ap.add_argument("--min-count", type=int, default=5,
                    help="fortunes characters rarer than this map to ▩ (dialogue characters never do)")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from mof.export._tf import import_tf
    from mof.export.keras_model import build_keras_model
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
    from synthetic import char_vocab, compile_next_char, next_char_windows, save_checkpoint
    from mof.runtime.config import ModelConfig
    tf = import_tf()
    tf.keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        sources = fetch_fortunes(Path(tmp))
        conversations = fetch_dialogues(Path(tmp))
    entries = [e for name in FILES for e in entries_of(sources[name])]
    train = [e for i, e in enumerate(entries) if i % 20 != 7]
    held = [e for i, e in enumerate(entries) if i % 20 == 7]
    train_text = "\n\n".join(train) + "\n"
    train_pairs, train_convs, held_convs = split_dialogues(conversations)
    records = dialogue_records(train_pairs, train_convs, rng, args.chains)
    dialogue_text = "\n".join(records) + "\n"

    counts = collections.Counter(train_text)
    every_dialogue_char = set(dialogue_text) | {c for conv in held_convs for p in conv for s in p for c in s}
    vocab = char_vocab({c for c, n in counts.items() if n >= args.min_count} | every_dialogue_char)
    index = {c: i for i, c in enumerate(vocab)}
    plain_ids = np.array([index.get(c, 0) for c in train_text], np.int32)
    chat_ids = np.array([index[c] for c in dialogue_text], np.int32)
    print(f"fortunes: {len(entries)} entries, {len(train_text)} training characters, {len(held)} held out; "
          f"dialogues: {len(conversations)} conversations, {len(train_pairs)} training pairs "
          f"({len(train_convs)} multi-turn prefixes, {args.chains} chains: {len(records)} records, "
          f"{len(dialogue_text)} characters), {len(held_convs)} held-out pairs; vocabulary {len(vocab)}",
          flush=True)

    config = ModelConfig(vocab_size=len(vocab), embed_dim=96, rnn_units=160, router_units=32,
                         rnn_layers=1, trans_layers=2, num_heads=4, ffn_dim=96, max_positions=512,
                         trans_window=64, window=128)
    model = build_keras_model(config)
    max_lr, min_lr = 2e-3, 2e-4
    compile_next_char(model, max_lr)
    n_chat = int(round(args.batch * args.dialogue_share))

    def batches():
        while True:
            xa, ya = next_char_windows(chat_ids, rng.integers(0, len(chat_ids) - args.seq_len - 1, n_chat),
                                       args.seq_len)
            xb, yb = next_char_windows(plain_ids, rng.integers(0, len(plain_ids) - args.seq_len - 1,
                                                               args.batch - n_chat), args.seq_len)
            yield np.concatenate([xa, xb]), np.concatenate([ya, yb])

    start = time.monotonic()
    seconds = args.minutes * 60

    class Progress(tf.keras.callbacks.Callback):
        """Cosine learning rate over max(step fraction, time fraction); stops at 1."""
        step = 0
        loss = float("nan")

        def progress(self) -> float:
            return max(self.step / args.steps, (time.monotonic() - start) / seconds)

        def on_train_batch_begin(self, batch, logs=None):
            p = min(self.progress(), 1.0)
            self.model.optimizer.learning_rate.assign(min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p)))

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.progress() >= 1:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            took = time.monotonic() - start
            self.loss = float(logs["loss"])
            print(f"step {self.step}: loss {logs['loss']:.3f}, {took / 60:.1f} min, "
                  f"{took / self.step:.3f} s/step, progress {self.progress():.0%}", flush=True)

    progress = Progress()
    model.fit(batches(), steps_per_epoch=200, epochs=10_000, verbose=0, callbacks=[progress])
    took = time.monotonic() - start
    clean = build_keras_model(config)          # no optimizer slots in the shipped checkpoint
    clean.set_weights(model.get_weights())
    out = args.out
    save_checkpoint(clean, out, vocab)
    (out / "config.json").write_text(json.dumps(config.to_dict()) + "\n", encoding="utf-8")
    held_records = [render(c) for c in held_convs]
    mixed = [x for pair in zip(held_records, held) for x in pair] + held[len(held_records):]
    (out / "heldout.txt").write_text("\n".join(mixed)[:20000] + "\n", encoding="utf-8")
    (out / "heldout_chat.txt").write_text("\n".join(held_records) + "\n", encoding="utf-8")
    (out / "heldout_poems.txt").write_text("\n\n".join(held)[:20000] + "\n", encoding="utf-8")
    (out / "heldout_dialogues.json").write_text(json.dumps(
        [[list(p) for p in c] for c in held_convs], ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    (out / "train_log.json").write_text(json.dumps({
        "steps": progress.step, "minutes": round(took / 60, 1), "last_epoch_loss": round(progress.loss, 4),
        "ended_by": "steps" if progress.step >= args.steps else "minutes",
        "args": {k: str(v) for k, v in vars(args).items()}}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} after {progress.step} steps in {took / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
