"""mof-web: write a static site that chats with a bundle inside the browser tab."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from mof.runtime.cli_common import add_precision_flags, run_command, utf8_stdio

PROG = "mof-web"


def build_parser() -> argparse.ArgumentParser:
    from mof.runtime.bundle_default import DEFAULT_BUNDLE
    from .site import JS_DIR
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Write a static web site (the chat page, the mof JavaScript package, onnxruntime-web's "
                    "WebAssembly files and the bundle's files) that runs the model inside the browser tab: "
                    "any static file server can host it (python -m http.server -d DIR), nothing is sent to a "
                    "server. The page looks as mof-serve's, shows a progress bar while the weights download "
                    "and the tokens/s it reaches. WebAssembly SIMD; several threads only when the page is "
                    "cross-origin isolated (served with Cross-Origin-Opener-Policy: same-origin and "
                    "Cross-Origin-Embedder-Policy: require-corp), one otherwise; the page says which.",
        epilog=f"Default model: the demo bundle shipped with mof ({DEFAULT_BUNDLE.name}). Needs the source "
               f"tree's js/ folder with onnxruntime-web installed (npm ci --prefix js).")
    p.add_argument("bundle", metavar="BUNDLE", type=Path, nargs="?", default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the shipped demo model)")
    p.add_argument("-o", "--output", metavar="DIR", type=Path, required=True, help="the site directory to write")
    add_precision_flags(p, verb="load in the page")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")
    p.add_argument("--js", metavar="DIR", type=Path, default=JS_DIR,
                   help="the mof JavaScript package: DIR/src and DIR/node_modules/onnxruntime-web (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args) -> int:
    from .site import SiteConfig, write_site
    cfg = SiteConfig(bundle=args.bundle, out=args.output, precision=args.precision or "fp32", force=args.force,
                     js=args.js)
    print(f"{PROG}: verifying {cfg.bundle} and writing {cfg.out} ({cfg.precision})", file=sys.stderr)
    info = write_site(cfg)
    print(f"{PROG}: wrote {cfg.out}: {info['files']} files, {info['bytes'] / 1e6:.1f} MB (the model "
          f"{info['model_bytes'] / 1e6:.1f} MB, onnxruntime-web {info['onnxruntime_web']})", file=sys.stderr)
    print(f"{PROG}: serve it with any static file server, e.g.  python -m http.server -d {cfg.out} 8000  "
          "then open http://127.0.0.1:8000/", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    utf8_stdio()
    args = build_parser().parse_args(argv)
    return run_command(PROG, lambda: run(args), debug=args.debug, unchanged="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
