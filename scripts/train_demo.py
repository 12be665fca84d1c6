"""Train the small demo T6 shipped with mof, on Tang and Song poems and Chinese fortunes.

    python scripts/train_demo.py --out tests/fixtures/demo_ckpt [--minutes 25]

Data: the Debian package fortunes-zh (fetched with `apt-get download fortunes-zh` and
unpacked with dpkg-deb; ANSI colour codes and the `%` separators are stripped). Every
20th entry is held out (written next to the checkpoint as heldout.txt) for perplexity.
The network is xiaothink's own T6 code (mof.export.keras_model), trained with the usual
next-character loss at every position (the pieces of mof.export.synthetic's trainer: vocabulary,
training windows, loss and optimizer, checkpoint writing); the result is an ordinary TF
checkpoint plus vocab.txt in xiaothink's format — what a user of xiaothink would have.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILES = ("tang300", "song100", "chinese")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for ckpt.* , vocab.txt, heldout.txt")
    ap.add_argument("--minutes", type=float, default=25, help="training time budget (default 25)")
    ap.add_argument("--min-count", type=int, default=5, help="characters rarer than this map to ▩")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from mof.export._tf import import_tf
    from mof.export.keras_model import build_keras_model
    from mof.export.synthetic import char_vocab, compile_next_char, next_char_windows, save_checkpoint
    from mof.runtime.config import ModelConfig
    tf = import_tf()
    tf.keras.utils.set_random_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        sources = fetch_fortunes(Path(tmp))
    entries = [e for name in FILES for e in entries_of(sources[name])]
    train = [e for i, e in enumerate(entries) if i % 20 != 7]
    held = [e for i, e in enumerate(entries) if i % 20 == 7]
    train_text = "\n\n".join(train) + "\n"
    counts = collections.Counter(train_text)
    vocab = char_vocab(c for c, n in counts.items() if n >= args.min_count)
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index.get(c, 0) for c in train_text], np.int32)
    print(f"{len(entries)} entries, {len(train_text)} training characters, "
          f"{len(held)} held-out entries, vocabulary {len(vocab)}", flush=True)

    config = ModelConfig(vocab_size=len(vocab), embed_dim=96, rnn_units=160, router_units=32,
                         rnn_layers=1, trans_layers=2, num_heads=4, ffn_dim=96, max_positions=512,
                         trans_window=64, window=128)
    model = build_keras_model(config)
    steps_per_epoch = 200
    total_guess = int(args.minutes * 60 / 0.24)     # ~0.24 s per step on 2 cores; the budget decides
    schedule = tf.keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=max(total_guess, 1000),
                                                         alpha=0.1)
    compile_next_char(model, schedule)
    rng = np.random.default_rng(args.seed)

    def batches():
        while True:
            yield next_char_windows(ids, rng.integers(0, len(ids) - args.seq_len - 1, size=args.batch),
                                    args.seq_len)

    deadline = time.monotonic() + args.minutes * 60

    class Budget(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            left = (deadline - time.monotonic()) / 60
            print(f"epoch {epoch + 1}: loss {logs['loss']:.3f} ({left:.1f} min left)", flush=True)
            if left <= 0:
                self.model.stop_training = True

    model.fit(batches(), steps_per_epoch=steps_per_epoch, epochs=10_000, verbose=0,
              callbacks=[Budget()])
    clean = build_keras_model(config)          # no optimizer slots in the shipped checkpoint
    clean.set_weights(model.get_weights())
    save_checkpoint(clean, args.out, vocab)
    (args.out / "heldout.txt").write_text("\n\n".join(held)[:20000] + "\n", encoding="utf-8")
    (args.out / "config.json").write_text(json.dumps(config.to_dict()) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
