"""The static site mof-web writes: the page (web/static), mof-serve's stylesheet, the JavaScript
package (js/src), onnxruntime-web's WebAssembly build (from its npm package, js/node_modules) and the
bundle's files for one precision, verified before they are copied.

    DIR/index.html, page.js, page.css, config.json
    DIR/chat.css, fontcheck.js, favicon.svg, favicon.ico   mof-serve's stylesheet, font check and icon
    DIR/mof/*.js                       the package (mof-js/web)
    DIR/ort/ort.wasm.min.mjs, ort-wasm-simd-threaded.mjs, ort-wasm-simd-threaded.wasm, package.json
    DIR/bundle/manifest.json, vocab.json, the precision's decoding graphs and weights file
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mof.serve  # its static/: the page looks as mof-serve's, with its icon (mof.serve's __init__ imports nothing)
from mof.runtime.bundle import read_manifest, verify_bundle
from mof.runtime.contract import FP32, INT8, MANIFEST_FILE
from mof.runtime.errors import MofError

STATIC = Path(__file__).resolve().parent / "static"
SERVE_STATIC = Path(mof.serve.__file__).resolve().parent / "static"
SERVED = ("chat.css", "fontcheck.js", "favicon.svg", "favicon.ico")     # mof-serve's files the site holds too
JS_DIR = Path(__file__).resolve().parents[1] / "js"       # the source tree's package (an editable install)
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "page.js", "page.css")


@dataclass(frozen=True)
class SiteConfig:
    bundle: Path            # the bundle directory to serve
    out: Path               # the site directory to write
    precision: str = FP32   # the graphs the page loads: fp32, int8 or int4
    force: bool = False     # replace an existing non-empty DIR
    js: Path = JS_DIR       # the JavaScript package: src/ and node_modules/onnxruntime-web/dist/


def js_files(js: Path) -> tuple[Path, Path]:
    """(the package's src/, onnxruntime-web's dist/); MofError saying what to do when either is missing."""
    src = js / "src"
    dist = js / "node_modules" / "onnxruntime-web" / "dist"
    if not (src / "web.js").is_file():
        raise MofError(f"mof-web needs the JavaScript package of the mof source tree ({src} has no web.js); "
                       "run it from an editable install (pip install -e .) or pass --js DIR")
    missing = [f for f in ORT_FILES if not (dist / f).is_file()]
    if missing:
        raise MofError(f"onnxruntime-web is not installed in {js}/node_modules ({', '.join(missing)} missing): "
                       f"run  npm ci --prefix {js}")
    return src, dist


def bundle_files(cfg: SiteConfig) -> tuple[list[str], dict]:
    """The files the page loads (verified), and the manifest."""
    verify_bundle(cfg.bundle)
    manifest = read_manifest(cfg.bundle)
    graphs = manifest.decoding_graphs(cfg.precision)
    files = [manifest.graph_file(g, cfg.precision) for g in graphs]
    if None in files:
        flag = "" if cfg.precision == INT8 else f" --{cfg.precision}"
        raise MofError(f"{cfg.bundle} has no {cfg.precision} graphs; add them with: mof-quantize{flag} {cfg.bundle}")
    weights = manifest.weights_file(cfg.precision)
    return [MANIFEST_FILE, manifest.vocab_file, *files, *([weights] if weights else [])], manifest


def write_site(cfg: SiteConfig, say=lambda text: None) -> dict:
    """Write the site into cfg.out (built beside it, then renamed: never half a site); returns a summary."""
    src, dist = js_files(cfg.js)
    missing = [name for name in SERVED if not (SERVE_STATIC / name).is_file()]
    if missing:
        raise MofError(f"mof-serve's {', '.join(missing)} missing from {SERVE_STATIC}")
    files, manifest = bundle_files(cfg)
    out = cfg.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not cfg.force:
        raise MofError(f"{out} exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in PAGE_FILES:
            shutil.copyfile(STATIC / name, tmp / name)
        for name in SERVED:
            shutil.copyfile(SERVE_STATIC / name, tmp / name)
        (tmp / "mof").mkdir()
        for f in sorted(p for p in src.glob("*.js") if p.name != "node.js"):     # node.js: Node's file access
            shutil.copyfile(f, tmp / "mof" / f.name)
        (tmp / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(dist / name, tmp / "ort" / name)
        shutil.copyfile(dist.parent / "package.json", tmp / "ort" / "package.json")   # its version and licence (MIT)
        (tmp / "bundle").mkdir()
        size = 0
        for name in files:
            say(f"copying {name}")
            shutil.copyfile(cfg.bundle / name, tmp / "bundle" / name)
            size += (tmp / "bundle" / name).stat().st_size
        version = json.loads((dist.parent / "package.json").read_text(encoding="utf-8"))["version"]
        config = {"model": cfg.bundle.resolve().name, "bundle": "bundle/", "precision": cfg.precision,
                  "onnxruntime_web": version}
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"files": len([p for p in out.rglob("*") if p.is_file()]), "bytes": total, "model_bytes": size,
            "onnxruntime_web": version, "form": manifest.form}
