"""mof-check: does this machine give the numbers the bundle's export measured?

Recomputes, per precision, the reference logits the export (and mof-quantize) recorded in the
bundle (mof.runtime.selfcheck) with this onnxruntime, provider and CPU, and prints one ✓/✗ line per
precision — max |Δlogit|, top-1 agreement, the verdict against the recorded tolerance — and one per
probe under it. Exit 0 when every precision checked reproduces its references, 1 otherwise.
``--record`` adds references to a bundle made before them (runtime-only: numpy + onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.cli_common import add_provider_flag, number, run_command, utf8_stdio

PROG = "mof-check"


def build_parser() -> argparse.ArgumentParser:
    from mof.runtime.bundle_default import DEFAULT_BUNDLE
    from mof.runtime.contract import PRECISIONS
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Check that this machine (CPU, onnxruntime, provider) reproduces the logits the "
                    "bundle's export recorded for a few fixed inputs (a window pass, a short one, a "
                    "batch of them, a stream prefill, a step and a batch of steps), per precision.",
        epilog="Exit 0 when every precision checked reproduces its references within the tolerance "
               "recorded with them (fp32 and int8 1e-4; int4 1e-4 on the reference's CPU kind, 0.15 "
               "on another), 1 otherwise. docs/platforms.md lists what was measured where.")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, nargs="?", default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the shipped demo model)")
    p.add_argument("--precision", action="append", choices=PRECISIONS,
                   help="check only this precision (repeatable; default: every one the bundle has)")
    add_provider_flag(p)
    p.add_argument("--threads", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the verdicts as JSON to FILE")
    p.add_argument("--record", action="store_true",
                   help="compute the references on this machine and add them to the bundle (for a "
                        "bundle made before the self-check; run it where the bundle was exported)")
    p.add_argument("--force", action="store_true", help="with --record: replace references already recorded")
    p.add_argument("-q", "--quiet", action="store_true", help="only the verdict lines, no per-probe lines")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def precisions_of(manifest, wanted: Optional[Sequence[str]]) -> list[str]:
    from mof.runtime.contract import PRECISIONS
    from mof.runtime.errors import MofError
    have = [p for p in PRECISIONS if manifest.has_precision(p)]
    for p in wanted or ():
        if p not in have:
            raise MofError(f"{manifest.where} has no {p} graphs (it has {', '.join(have)})")
    return [p for p in have if p in (wanted or have)]


def check_precision(bundle: Path, precision: str, args) -> dict:
    """One precision's verdict (selfcheck.PrecisionCheck.to_dict) and its printed lines; a bundle
    without references, or an onnxruntime that cannot run the precision, is a failed verdict."""
    from mof.runtime.errors import MofError
    from mof.runtime.model import Model, check_environment
    from mof.runtime.selfcheck import describe, describe_reference
    try:
        note = check_environment(bundle, precision, args.provider)
        model = Model.load(bundle, precision=precision, threads=args.threads, providers=args.provider,
                           check_onnxruntime=False)
        result = model.self_check()
    except MofError as e:
        print(f"{precision:5s} ✗ {e}")
        return {"precision": precision, "passed": False, "error": str(e)}
    print(result.line())
    if not args.quiet:
        print(f"      references: {describe_reference(result.recorded_on)}")
        if note:
            print(f"      note: {note}")
        for line in describe(result):
            print(line)
    return result.to_dict()


def record(bundle: Path, wanted: Optional[Sequence[str]], force: bool, threads: Optional[int]) -> int:
    from mof.runtime.bundle import verify_bundle
    from mof.runtime.errors import MofError
    from mof.runtime.model import Model
    from mof.runtime.selfcheck import SECTION, make_reference
    from mof.writer.bundle_writer import BundleWriter
    from mof.writer.manifest import set_self_check, without_files
    from mof.writer.upgrade import copy_bundle_files

    manifest = verify_bundle(bundle)
    section = manifest.get(SECTION) if isinstance(manifest.get(SECTION), dict) else None
    done = set((section or {}).get("precisions") or {}) if not force else set()
    todo = [p for p in precisions_of(manifest, wanted) if p not in done]
    if not todo:
        raise MofError(f"{bundle} already records references for {', '.join(sorted(done))} "
                       "(use --force to replace them)")
    section = section if not force else None
    for p in todo:
        model = Model.load(bundle, precision=p, threads=threads, check_onnxruntime=False)
        section = make_reference(model, section, recorded_by=f"{PROG} --record")
        print(f"{PROG}: {p} references recorded ({len(section['probes'])} probes)", file=sys.stderr)
        del model
    new_manifest = without_files(manifest)
    set_self_check(new_manifest, section)
    with BundleWriter(bundle, force=True) as w:
        copy_bundle_files(w, bundle, manifest, new_manifest)
        w.commit(new_manifest)
    print(f"{PROG}: {bundle} now records references for {', '.join(sorted(section['precisions']))}",
          file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    utf8_stdio()
    args = build_parser().parse_args(argv)

    def work() -> int:
        import onnxruntime as ort

        from mof.runtime.bundle import read_manifest
        from mof.runtime.errors import MofError
        from mof.runtime.machine import cpu_features, describe_cpu
        from mof.runtime.providers import resolve
        from mof.runtime.selfcheck import SECTION

        if args.force and not args.record:
            raise MofError("--force goes with --record")
        if args.json and args.json.is_dir():
            raise MofError(f"--json {args.json} is a directory")
        if args.record:
            return record(args.bundle, args.precision, args.force, args.threads)
        manifest = read_manifest(args.bundle)
        if not isinstance(manifest.get(SECTION), dict):
            raise MofError(f"{args.bundle} records no reference logits (made before mof's self-check); "
                           f"add them on the machine that exported it: {PROG} --record {args.bundle}")
        wanted = precisions_of(manifest, args.precision)
        providers = ", ".join(resolve(args.provider).names)
        print(f"{PROG}: {args.bundle.name} on {describe_cpu(cpu_features())}, onnxruntime "
              f"{ort.__version__}, {providers}")
        results = [check_precision(args.bundle, p, args) for p in wanted]
        failed = [r["precision"] for r in results if not r["passed"]]
        verb = "reproduces" if len(wanted) == 1 else "reproduce"
        print(f"{PROG}: " + (f"{', '.join(failed)} did not reproduce the bundle's references" if failed
                             else f"{', '.join(wanted)} {verb} the bundle's references"))
        if args.json:
            report = {"bundle": str(args.bundle), "cpu": cpu_features(), "onnxruntime": ort.__version__,
                      "providers": providers, "passed": not failed, "precisions": results}
            args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return 1 if failed else 0

    return run_command(PROG, work, debug=args.debug, interrupted="interrupted", internal_errors=True)


if __name__ == "__main__":
    sys.exit(main())
