"""Rewriting a verified bundle's files into a new one: what mof-quantize keeps of the old bundle
(``copy_bundle_files``), and ``upgrade_bundle``, the one reader of older bundle formats
(mof-quantize --upgrade; the runtime refuses them with that command's name)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from mof.runtime.bundle import verify_bundle
from mof.runtime.chat import DEFAULT_FORM
from mof.runtime.contract import (FORMAT_VERSION, FP32, GRAPH_CHUNK, INT8, MANIFEST_FILE, PRECISIONS, QUANTIZED_GRAPHS,
                                  native_key)
from mof.runtime.errors import MofError
from mof.runtime.manifest import Manifest

from .bundle_writer import BundleWriter
from .graph_store import load_graph, store_precision
from .manifest import mark_current, without_files

UPGRADABLE = (1,)   # format 1: every graph embeds its own weights (no weights file, no decode graph)


def _decoding_files(manifest: dict, precision: str) -> dict[str, str]:
    """graph name -> file of ``precision``'s decoding graphs (full.onnx and window.onnx, for
    analysis, keep their own weights and are copied like any other file)."""
    return {n: g[precision] for n, g in manifest["graphs"].items()
            if n in QUANTIZED_GRAPHS and isinstance(g, dict) and isinstance(g.get(precision), str)}


def _copy_rest(w: BundleWriter, bundle_dir: Path, manifest: dict, written: set[str]) -> None:
    """Copy every listed file not in ``written`` (the vocabulary, the analysis graphs, ...)."""
    for name in manifest["files"]:
        if name not in written and name != MANIFEST_FILE:
            shutil.copy2(bundle_dir / name, w.path(name))     # own copies: bundles hold no hard links


def copy_bundle_files(w: BundleWriter, bundle_dir: Path, manifest: dict, new_manifest: dict,
                      leave_out: Optional[str] = None) -> None:
    """Put a verified bundle's files into the bundle ``w`` is building, except the graphs and
    weights file of precision ``leave_out``, and record the weights files in ``new_manifest``."""
    old = Manifest(manifest, str(bundle_dir))
    written = set()
    new_manifest["weights"] = {}
    for p in PRECISIONS:
        files, weights = _decoding_files(manifest, p), old.weights_file(p)
        written |= set(files.values()) | ({weights} if weights else set())
        if p == leave_out:          # and its fused graphs (mof-quantize --native), made for the old weights
            written |= set(_decoding_files(manifest, native_key(p)).values())
        if p == leave_out or not files:
            continue
        if not weights:
            raise MofError(f"{bundle_dir}: the manifest names no {p} weights file")
        for f in set(files.values()) | {weights}:
            shutil.copy2(bundle_dir / f, w.path(f))
        new_manifest["weights"][p] = weights
    _copy_rest(w, bundle_dir, manifest, written)


def upgraded_manifest(manifest: dict) -> dict:
    """A format-1 manifest's content as this mof's format records it (files and weights: the
    writer's): int8's record under its own key (format 1 kept it at the top level), and the form
    and decoding recommendation format 1 could leave unsaid, as its readers took them (the chat
    form; exact mode, R = 1)."""
    new = without_files(manifest)
    top = {k: new.pop(k) for k in ("quantization", "accuracy") if k in new}
    if top and INT8 not in new:
        new[INT8] = top
    new.setdefault("form", DEFAULT_FORM)
    new.setdefault("recommended_mode", "exact")
    new.setdefault("recommended_refill_every", 1)
    return new


def upgrade_bundle(bundle_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Rewrite a format-1 bundle in this mof's format (one weights file per precision holding the
    step and chunk graphs' weights), in place and atomically; the graphs compute exactly what they
    did, nothing is re-measured. It gets no decode graph (that is built from the checkpoint:
    mof-export)."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir, versions=UPGRADABLE + (FORMAT_VERSION,))
    if manifest.format_version == FORMAT_VERSION:
        raise MofError(f"{bundle_dir} is already format {FORMAT_VERSION}")
    if not manifest.graph_file(GRAPH_CHUNK, FP32):
        raise MofError(f"{bundle_dir} has no chunk graph (stream decoding's refills), which an upgrade "
                       "cannot add; re-export it with mof-export")
    new_manifest = upgraded_manifest(manifest)
    written = set()
    with BundleWriter(bundle_dir, force=True) as w:
        for p in PRECISIONS:
            files = _decoding_files(manifest, p)
            if files:
                store_precision(w, new_manifest, p, {n: load_graph(bundle_dir, f) for n, f in files.items()}, log)
                written |= set(files.values())
        _copy_rest(w, bundle_dir, manifest, written)
        mark_current(new_manifest)
        return w.commit(new_manifest)
