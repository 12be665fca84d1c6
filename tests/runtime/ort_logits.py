"""The demo bundle's exact-mode logits at fixed positions of held-out text, per precision: what
tests/runtime/test_onnxruntime_range.py compares with the ones recorded in
tests/fixtures/ort_reference_logits.npz, and what docs/embedding.md's version table was measured with.

    python tests/runtime/ort_logits.py --record            # rewrite the fixture (under the newest
                                                           # supported onnxruntime, after a re-export)
    python tests/runtime/ort_logits.py --dump FILE.npz     # every logit, for comparing versions
    python tests/runtime/ort_logits.py --compare REF.npz OTHER.npz ...

Runs with the runtime alone (numpy + onnxruntime): each onnxruntime in its own environment.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ort_reference_logits.npz"
HELDOUT = Path(__file__).resolve().parents[1] / "fixtures" / "demo_ckpt" / "heldout.txt"
POSITIONS = tuple(range(4, 116, 4))          # 28 prefix lengths, past the window W = 64
TOP = 32                                     # the fixture keeps each position's 32 largest logits


def bundle_files(bundle: Path, precision: str) -> dict[str, str]:
    """The files a precision's decoding reads (graphs and weights) -> their sha256: what the
    recorded logits belong to."""
    from mof.runtime.bundle import read_manifest
    m = read_manifest(bundle)
    files = [m.graph_file(g, precision) for g in m.decoding_graphs(precision)]
    files += [m.weights_file(precision)] if m.weights_file(precision) else []
    return {f: hashlib.sha256((bundle / f).read_bytes()).hexdigest() for f in files if f}


def exact_logits(precision: str, bundle: Path | None = None, **load) -> np.ndarray:
    """float32 [len(POSITIONS), V]: the next-token logits after each prefix of the held-out text."""
    from mof.runtime import DEFAULT_BUNDLE, Model
    model = Model.load(bundle or DEFAULT_BUNDLE, precision=precision, **load)
    ids = np.asarray(model.vocab.encode(HELDOUT.read_text(encoding="utf-8")[: max(POSITIONS)]), np.int32)
    return np.concatenate([model.exact_logits(ids[:k]) for k in POSITIONS])


def compact(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top ids int32 [N, TOP], their logits float32, logsumexp over the vocabulary float32 [N])."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :TOP].astype(np.int32)
    m = logits.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))).astype(np.float32)
    return top, np.take_along_axis(logits, top, 1).astype(np.float32), lse


def record(out: Path = FIXTURE, precisions=("fp32", "int8", "int4")) -> None:
    import onnxruntime as ort
    from mof.runtime import DEFAULT_BUNDLE
    from mof.measure.machine import cpu_features
    arrays = {"positions": np.asarray(POSITIONS, np.int32), "onnxruntime": np.asarray(ort.__version__),
              "cpu_flags": np.asarray(cpu_features()["flags"])}     # int4's logits depend on the CPU kind
    for p in precisions:
        top, values, lse = compact(exact_logits(p, check_onnxruntime=False))
        arrays.update({f"{p}.top": top, f"{p}.values": values, f"{p}.logsumexp": lse,
                       f"{p}.files": np.asarray(sorted(f"{f}:{h}" for f, h in bundle_files(DEFAULT_BUNDLE, p).items()))})
    np.savez_compressed(out, **arrays)
    print(f"{out}: {len(POSITIONS)} positions x {', '.join(precisions)}, onnxruntime {ort.__version__}, "
          f"{out.stat().st_size} bytes")


def dump(out: Path, precisions=("fp32", "int8", "int4")) -> None:
    import onnxruntime as ort
    np.savez_compressed(out, onnxruntime=np.asarray(ort.__version__),
                        **{p: exact_logits(p, check_onnxruntime=False) for p in precisions})


def compare(ref: Path, others: list[Path]) -> None:
    a = np.load(ref, allow_pickle=False)
    print(f"| onnxruntime | " + " | ".join(f"{p} vs {a['onnxruntime']}" for p in ("fp32", "int8", "int4")) + " |")
    print("|---|---|---|---|")
    for path in others:
        b = np.load(path, allow_pickle=False)
        cells = []
        for p in ("fp32", "int8", "int4"):
            d = float(np.abs(a[p] - b[p]).max())
            top1 = float((a[p].argmax(1) == b[p].argmax(1)).mean())
            cells.append(f"{d:.2g}" + ("" if d == 0 else f", top-1 {top1:.0%}"))
        print(f"| {b['onnxruntime']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", action="store_true", help=f"rewrite {FIXTURE.name}")
    g.add_argument("--dump", type=Path, metavar="FILE")
    g.add_argument("--compare", type=Path, nargs="+", metavar="NPZ")
    args = ap.parse_args()
    if args.record:
        record()
    elif args.dump:
        dump(args.dump)
    else:
        compare(args.compare[0], args.compare[1:])
    sys.exit(0)
