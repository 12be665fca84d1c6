"""Time `mof-export` on a full-size t6_beta_dense (V = 16000, random weights).

    python benchmarks/export_full_size.py [--workdir DIR]

Builds the checkpoint with xiaothink's code (via tests/helpers/synthetic.py), then runs
the mof-export command exactly as a user would and reports wall time, bundle size
and the parity figures from the manifest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))   # synthetic


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None, help="where to put checkpoint and bundle")
    ap.add_argument("--vocab-size", type=int, default=16000)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mof-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    from mof.export.families import T6_TYPES
    from synthetic import make_checkpoint
    cfg = T6_TYPES["t6_beta_dense"].config(args.vocab_size)
    ckpt = work / "ckpt"
    if not (ckpt / "checkpoint").exists():
        t0 = time.perf_counter()
        make_checkpoint(ckpt, cfg, model_type="t6_beta_dense")
        print(f"checkpoint built in {time.perf_counter() - t0:.1f} s", flush=True)
    out = work / "t6_beta_dense.mof"
    t0 = time.perf_counter()
    subprocess.run(["mof-export", str(ckpt), "--model-type", "t6_beta_dense", "-o", str(out),
                    "--force"], check=True)
    wall = time.perf_counter() - t0
    m = json.loads((out / "manifest.json").read_text())
    sizes = {name: rec["bytes"] for name, rec in m["files"].items()}
    result = {
        "model": "t6_beta_dense", "vocab_size": args.vocab_size,
        "export_wall_s": round(wall, 1),
        "files_mb": {k: round(v / 1e6, 1) for k, v in sizes.items()},
        "parity_max_abs_diff": m["validation"]["max_abs_diff"],
        "parity_cases": len(m["validation"]["cases"]),
        "parity_passed": m["validation"]["passed"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
