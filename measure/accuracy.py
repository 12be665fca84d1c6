"""Accuracy of one decoding against another on real text: agreement, KL, perplexity.

Used at every export (the stream policies vs exact, measure/policies.py) and at
quantization (int8 vs fp32, measure/report.py). Position p's logits predict token p+1;
exact mode re-reads the last W tokens for every position, stream mode carries its
recurrent state and refills by the decoder's rule.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mof.runtime.decoder import StreamDecoder
from mof.runtime.model import Model


def exact_logits(model: Model, ids: np.ndarray, batch: int = 16) -> np.ndarray:
    """[N, V]: the reference's next-token logits after each prefix ids[:p+1]."""
    W = model.config.window
    n = len(ids)
    out = np.empty((n, model.config.vocab_size), np.float32)
    for p in range(min(n, W - 1)):                             # short prefixes, one by one
        out[p] = model.exact_logits(ids[None, : p + 1])[0]
    full = [p for p in range(W - 1, n)]                        # full windows batch together
    for i in range(0, len(full), batch):
        ps = full[i:i + batch]
        windows = np.stack([ids[p + 1 - W: p + 1] for p in ps])
        out[ps] = model.exact_logits(windows)
    return out


def stream_logits(model: Model, ids: np.ndarray, refill_every: Optional[int] = None) -> np.ndarray:
    """[N, V]: the stream decoder's logits after each token, read one at a time by the decoder
    generation uses (runtime/decoder.py: the refill rule; default R: the bundle's recommendation)."""
    return decoder_logits(StreamDecoder(model, refill_every), ids)


def decoder_logits(decoder, ids: np.ndarray) -> np.ndarray:
    """[N, V]: ``decoder``'s logits after each of ``ids``, fed one at a time (teacher forcing)."""
    out = np.empty((len(ids), decoder.model.config.vocab_size), np.float32)
    for p, tok in enumerate(ids):
        out[p] = decoder.feed([int(tok)])
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    """exp of the mean negative log-likelihood of targets[p] under logits[p]."""
    lp = _log_softmax(logits)
    return float(np.exp(-lp[np.arange(len(targets)), targets].mean()))


def compare(ref: np.ndarray, other: np.ndarray) -> dict:
    """How closely ``other`` [N, V] follows ``ref`` [N, V]."""
    lp_ref, lp_other = _log_softmax(ref), _log_softmax(other)
    kl = (np.exp(lp_ref) * (lp_ref - lp_other)).sum(-1)              # KL(ref || other) per position
    top1_ref = ref.argmax(-1)
    top5_other = np.argsort(other, axis=-1)[:, -5:]
    diff = np.abs(ref - other)
    return {
        "top1_agreement": float((top1_ref == other.argmax(-1)).mean()),
        "top5_contains_top1": float((top5_other == top1_ref[:, None]).any(-1).mean()),
        "mean_kl": float(kl.mean()),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }
