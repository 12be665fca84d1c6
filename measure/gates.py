"""Every accuracy threshold mof.measure decides by, in one place, each with what it gates and why.

Readers: report.py (a quantized precision against fp32: mof-quantize, mof-export --int8,
mof-eval --int8/--int4), policies.py (the stream refill policy a bundle recommends), eval_cli.py
(whether mof-eval recommends at all); tests and benchmarks import them from here rather than keep
their own copies. The measured figures these are judged against are in docs/quantization.md and
docs/demo-model.md. (The export's TensorFlow-vs-onnxruntime tolerance, mof-export --atol, and
mof-check's load-time tolerances are not accuracy gates of a measurement on text: they stay with
the export options and runtime/selfcheck.py.)
"""

from __future__ import annotations

# --- a quantized precision (int8, int4) against fp32, teacher-forced on the measuring text ----------
# Gates writing it: mof-quantize and mof-export --int8 keep the quantized graphs only when exact AND
# stream mode pass both (else nothing is written, exit 1, unless --allow-degraded; mof-quantize --check
# and mof-eval report the same verdict on this machine).

# top-1 agreement with fp32 at least this: greedy decoding and low-temperature sampling follow the top
# choice, so this bounds how often a quantized bundle writes another character than fp32 would (one
# position in 20); the CPU-independent per-row int8 scheme clears it with room to spare, so a miss
# means a scheme or a model that does not quantize well, not noise (int4 misses it on the 96-wide
# demo: docs/quantization.md).
QUANT_MIN_TOP1 = 0.95

# perplexity change (quantized / fp32 - 1) at most this: sampling reads the whole distribution, not
# only its top, and a quantization can keep the top choice while flattening the rest; +5 % is
# well above what per-row int8 costs and below what a broken product (a saturating kernel, a wrong
# scale) costs.
QUANT_MAX_PPL_CHANGE = 0.05

# --- a stream refill policy against exact decoding, on the same text and precision ------------------
# Gates recommending it (manifest "stream": the bundle's default decoding, mof-eval's advice): the
# largest R that passes both; exact mode when none does. Stricter than the quantization gates
# because a quantized bundle decoding in stream mode pays both errors, and the policy is chosen for
# the user (exact decoding, the reference's, is always the alternative).

# perplexity change (policy / exact - 1) at most this
POLICY_MAX_PPL_CHANGE = 0.03

# mean KL(exact || policy) per position at most this: perplexity alone can stay flat while the
# distribution moves (probability traded between wrong characters); KL sees it
POLICY_MAX_MEAN_KL = 0.03

# --- whether mof-eval's table can recommend a policy at all ------------------------------------------
# Fewer measured characters than MIN_EVAL_WINDOWS x W and the table means nothing: below W the window
# never slides, so what the refill dial is for (a state read past the window) is never exercised;
# below 2W the largest candidate R (W/2) has refilled fewer than 4 times, too few cycles to tell
# policies apart by the POLICY_* gates. mof-eval then warns and recommends nothing.
MIN_EVAL_WINDOWS = 2


def quant_gates() -> dict:
    """The quantization gates as a report records them (manifest, mof-quantize --check)."""
    return {"min_top1_agreement": QUANT_MIN_TOP1, "max_perplexity_change": QUANT_MAX_PPL_CHANGE}


def quant_passes(top1_agreement: float, perplexity_change: float) -> bool:
    """One mode (exact or stream) of a quantized precision passes the quantization gates."""
    return bool(top1_agreement >= QUANT_MIN_TOP1 and perplexity_change <= QUANT_MAX_PPL_CHANGE)


def policy_passes(perplexity_change: float, mean_kl: float) -> bool:
    """A stream refill policy may be recommended."""
    return bool(perplexity_change <= POLICY_MAX_PPL_CHANGE and mean_kl <= POLICY_MAX_MEAN_KL)


def policy_rule() -> str:
    """The recommendation rule in words, as each bundle's stream table records it."""
    return (f"the largest R with perplexity within +{POLICY_MAX_PPL_CHANGE:.0%} of exact's and mean KL <= "
            f"{POLICY_MAX_MEAN_KL:g}; exact mode when none qualifies")
