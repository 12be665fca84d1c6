"""mof-bench's worker: one precision timed in a process of its own, so its load time and memory
are its own (``python -m mof.bench.worker BUNDLE PRECISION MODES LENGTHS N THREADS WARMUP R``
prints the results as JSON; ``mof.bench.cli`` starts it).

Per mode, the warm-up runs everything that is then timed, untimed: each prompt read by a fresh
decoder and a token sampled, then the decoded tokens. One-time costs (onnxruntime's set-up for
each input shape it has not seen, numpy's first calls in the sampler) stay out of the timings,
which then time:
- time to first token (TTFT) per prompt length: a fresh decoder reads the prompt and one token
  is sampled;
- each decoded token (sampling + the model call that reads it), after a prompt of
  min(128, longest) ids; the tokens that ran a window pass are recorded with its token count.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from . import roofline
from .memory import AnonPeak, peak_rss_mb, reset_peak_rss, rss_mb

MODES = ("stream", "plain", "exact")   # stream: the refill rule at R; plain: steps only, no refill (the baseline)
PROVIDER_ENV = "MOF_BENCH_PROVIDER"    # mof-bench --provider, handed to the worker processes
NATIVE_ENV = "MOF_BENCH_NATIVE"        # mof-bench --native / --no-native ("1" / "0"; unset: Model.load's auto)
HEADLINE_PROMPT = 128                  # the prompt decoding starts after, and the reported prefill's


def decoder(model, mode: str, refill_every: int):
    """A fresh decoder for one of MODES; ``refill_every``: the stream mode's R (the others have none)."""
    from mof.runtime.decoder import make_decoder
    if mode == "plain":
        from mof.measure.plain import PlainDecoder
        return PlainDecoder(model)
    return make_decoder(model, mode, refill_every if mode == "stream" else None)


def _untimed() -> float:
    """The warm-up's clock: its figures are not kept."""
    return 0.0


def prefill_times(model, mode: str, R: int, sampler, ids: np.ndarray, lengths: Sequence[int],
                  clock: Callable[[], float]) -> dict:
    """{"L": (seconds, tokens of the pass)} per prompt length L: a fresh decoder reads the first L
    ids (stream and exact read the last K / W only; plain skips L beyond the position table) and
    one token is sampled."""
    cfg, out = model.config, {}
    for L in lengths:
        if mode == "plain" and L > cfg.max_positions:
            continue
        t = clock()
        dec = decoder(model, mode, R)
        logits = dec.feed(ids[:L])
        sampler.sample(logits, ids[:L][-cfg.window:])
        out[str(L)] = (clock() - t, roofline.prefill_tokens(dec, mode, L))
    return out


def decode_times(model, mode: str, R: int, sampler, ids: np.ndarray, prompt: int, n: int,
                 clock: Callable[[], float]) -> tuple[list, list, Optional[int]]:
    """(seconds per decoded token, [tokens, ms] of each token that ran a window pass, the
    decoder's R) for ``n`` tokens after a prompt of the first ``prompt`` ids."""
    text = ids[:prompt].tolist()
    dec = decoder(model, mode, R)
    logits = dec.feed(text)
    times, passes = [], []
    for _ in range(n):
        t = clock()
        tok = sampler.sample(logits, text[-model.config.window:])
        text.append(tok)
        refills = dec.refills
        logits = dec.feed([tok])
        times.append(clock() - t)
        tokens = roofline.pass_tokens(dec, mode, refills, len(text))
        if tokens:
            passes.append([tokens, times[-1] * 1e3])
    return times, passes, (None if mode == "plain" else dec.refill_every)


def measure_mode(model, mode: str, R: int, sampler, lengths: Sequence[int], decode_tokens: int,
                 warmup: int, clock: Callable[[], float] = time.perf_counter) -> dict:
    """One mode's timings: ``warmup`` untimed runs of everything timed, then the timed run."""
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=max(lengths) + decode_tokens + 8,
                                            dtype=np.int32)
    prompt = min(HEADLINE_PROMPT, max(lengths))
    for _ in range(warmup):
        prefill_times(model, mode, R, sampler, ids, lengths, _untimed)
        decode_times(model, mode, R, sampler, ids, prompt, decode_tokens, _untimed)
    prefill = prefill_times(model, mode, R, sampler, ids, lengths, clock)
    times, passes, refill_every = decode_times(model, mode, R, sampler, ids, prompt, decode_tokens, clock)
    return _mode_result(mode, refill_every, prefill, times, passes)


def _mode_result(mode: str, refill_every: Optional[int], prefill: dict, times: list, passes: list) -> dict:
    ms = np.array(times) * 1e3
    prefill = {L: {"ttft_s": s, "tokens_per_s": int(L) / s, "tokens": tokens} for L, (s, tokens) in prefill.items()}
    head = str(HEADLINE_PROMPT) if str(HEADLINE_PROMPT) in prefill else max(prefill, key=int, default=None)
    return {
        "mode": mode, "refill_every": refill_every,
        "decode_ms_p50": float(np.percentile(ms, 50)), "decode_ms_p95": float(np.percentile(ms, 95)),
        "decode_ms_mean": float(ms.mean()),
        "decode_tokens_per_s": float(1e3 / ms.mean()),
        "prefill": prefill,
        "window_passes": passes,                      # [tokens, ms] of each token that ran one
        "prompt_length": int(head) if head else None,
        "prefill_tokens_per_s": prefill[head]["tokens_per_s"] if head else float("nan"),
        "ttft_s": prefill[head]["ttft_s"] if head else float("nan"),
    }


def load(bundle: Path, precision: str, threads: Optional[int]):
    """(model, what loading it took: seconds and memory above the process's before)."""
    from mof.runtime.model import Model
    base = rss_mb()                       # the interpreter, numpy and onnxruntime, before the model
    base_anon = AnonPeak.read()
    reset = reset_peak_rss()
    t = time.perf_counter()
    with AnonPeak() as anon:
        native = {"1": True, "0": False}.get(os.environ.get(NATIVE_ENV, ""))
        model = Model.load(bundle, precision=precision, threads=threads,
                           providers=os.environ.get(PROVIDER_ENV) or None, native=native)
    return model, {"load_s": time.perf_counter() - t,
                   "rss_before_load_mb": base,
                   "load_peak_rss_mb": peak_rss_mb() - base if reset else float("nan"),  # while loading
                   "load_peak_anon_mb": anon.peak_mb - base_anon}   # private memory only (no file pages)


def run(bundle: Path, precision: str, modes: Sequence[str], lengths: Sequence[int], decode_tokens: int,
        threads: Optional[int], warmup: int, refill_every: int) -> dict:
    """Every mode of one precision: {"results": [one dict per mode]}."""
    from mof.runtime.sampling import Sampler, SamplingConfig
    model, loaded = load(bundle, precision, threads)
    sampler = Sampler(SamplingConfig(seed=0), model.vocab)
    out = []
    for mode in modes:
        r = measure_mode(model, mode, refill_every, sampler, lengths, decode_tokens, warmup)
        out.append({**r, "precision": precision, "kernels": model.kernels, **loaded, "peak_rss_mb": peak_rss_mb(),
                    "steady_rss_mb": rss_mb() - loaded["rss_before_load_mb"]})   # after this mode's decoding
    return {"results": out}


def command(bundle: Path, precision: str, modes: Sequence[str], lengths: Sequence[int], decode_tokens: int,
            threads: Optional[int], warmup: int, refill_every: int) -> list[str]:
    """The command line of a worker process."""
    return [sys.executable, "-m", "mof.bench.worker", str(bundle), precision, ",".join(modes),
            ",".join(map(str, lengths)), str(decode_tokens), str(threads or 0), str(warmup), str(refill_every)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    b, precision, modes, lengths, n, threads, warmup, refill = list(sys.argv[1:] if argv is None else argv)
    print(json.dumps(run(Path(b), precision, modes.split(","), [int(x) for x in lengths.split(",")],
                         int(n), int(threads) or None, int(warmup), int(refill))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
