"""Regenerate the two tiny trained checkpoints the int8 tests gate on (tests/fixtures/trained_t6,
tests/fixtures/trained_t7): a T6 and a T7 with xiaothink's architecture, trained for 300 steps on
mof's built-in calibration text. Checked in so that the suite does not train them on every run;
run this (with the [export] extra) only when the architecture or the built-in text changes:

    python tests/helpers/make_trained_fixtures.py [--force]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mof_testing import TRAINED, trained_config, train_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="replace checkpoints that exist")
    args = ap.parse_args(argv)
    from mof.measure.calibration import builtin_text
    text = builtin_text()
    for family, folder in TRAINED.items():
        out = FIXTURES / folder
        if out.exists() and not args.force:
            print(f"{out} exists; pass --force to replace it", file=sys.stderr)
            return 1
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        train_checkpoint(tmp, trained_config(family, text), text, steps=300, log=print)
        for p in tmp.glob("checkpoint"):           # TF's text index names the prefix only: keep it relative
            p.write_text(p.read_text().replace(str(tmp) + "/", ""))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        print(f"wrote {out} ({sum(p.stat().st_size for p in out.iterdir()) / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
