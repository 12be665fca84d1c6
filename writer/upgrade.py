"""Rewriting a verified bundle's files into a new one: what mof-quantize keeps of the old bundle,
and ``upgrade_bundle`` (format 1 -> 2: one weights file per precision)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from mof.runtime.bundle import verify_bundle
from mof.runtime.contract import FORMAT_VERSION, MANIFEST_FILE, PRECISIONS, QUANTIZED_GRAPHS
from mof.runtime.errors import MofError
from mof.runtime.manifest import Manifest

from .bundle_writer import BundleWriter
from .graph_store import load_graph, store_precision
from .manifest import mark_current, move_legacy_int8_record, without_files


def copy_bundle_files(w: BundleWriter, bundle_dir: Path, manifest: dict, new_manifest: dict,
                      leave_out: Optional[str] = None, log: Callable[[str], None] = print) -> None:
    """Put a verified bundle's files into the bundle ``w`` is building, except the graphs (and
    weights file) of precision ``leave_out``, in format 2, and record them in ``new_manifest``:
    a precision that already has its weights file is copied as it is; a format-1 precision's
    step and chunk graphs are rewritten with their weights in one file (full.onnx and window.onnx,
    for analysis, are copied: their weights are laid out differently). A format-1 bundle has no
    decode graph, and gets none: it is built from the checkpoint (mof-export)."""
    old = Manifest(manifest, str(bundle_dir))
    written = set()
    new_manifest["graphs"] = {k: dict(v) for k, v in new_manifest["graphs"].items()}
    new_manifest["weights"] = {}
    for p in PRECISIONS:
        files = {n: g[p] for n, g in manifest["graphs"].items()      # the decoding graphs; full.onnx
                 if n in QUANTIZED_GRAPHS                                # and window.onnx keep their
                 and isinstance(g, dict) and isinstance(g.get(p), str)}  # own weights
        weights = old.weights_file(p)
        written |= set(files.values()) | ({weights} if weights else set())
        if p == leave_out or not files:
            continue
        if weights:
            for f in set(files.values()) | {weights}:
                shutil.copy2(bundle_dir / f, w.path(f))   # own copies: bundles hold no hard links
            new_manifest["weights"][p] = weights
        else:
            store_precision(w, new_manifest, p, {n: load_graph(bundle_dir, f) for n, f in files.items()}, log)
    for name in manifest["files"]:                        # vocabulary and anything else listed
        if name not in written and name != MANIFEST_FILE:
            shutil.copy2(bundle_dir / name, w.path(name))
    move_legacy_int8_record(new_manifest)
    mark_current(new_manifest)


def upgrade_bundle(bundle_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Rewrite a format-1 bundle in format 2 (one weights file per precision), in place and
    atomically; the graphs compute exactly what they did, nothing is re-measured."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    if manifest.get("format_version") == FORMAT_VERSION:
        raise MofError(f"{bundle_dir} is already format {FORMAT_VERSION}")
    with BundleWriter(bundle_dir, force=True) as w:
        new_manifest = without_files(manifest)
        copy_bundle_files(w, bundle_dir, manifest, new_manifest, log=log)
        return w.commit(new_manifest)
