"""Reading bundle directories: a directory holding ``manifest.json``, ``vocab.json`` and ONNX
graphs (docs/bundle-format.md). Reading verifies the format version and the sha256 of every file
before anything is loaded. Writing (atomic, mof.writer.bundle_writer) is the export side's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from .contract import FORMAT, FORMAT_VERSION, MANIFEST_FILE, NATIVE_PRECISIONS, PRECISIONS, READABLE_VERSIONS, native_key
from .errors import BundleError
from .manifest import Manifest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def is_plain_name(name: str) -> bool:
    """A bundle may only reference files directly inside itself."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name and not os.path.isabs(name) and ":" not in name)


def is_bundle_dir(path: Path) -> bool:
    try:
        m = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        return isinstance(m, dict) and m.get("format") == FORMAT
    except (OSError, ValueError):
        return False


def read_manifest(bundle_dir: str | Path, versions: tuple[int, ...] = READABLE_VERSIONS) -> Manifest:
    """Parse and check manifest.json (format and version) without verifying hashes. ``versions``:
    the format versions read; an older one is refused with the command that upgrades it
    (mof-quantize --upgrade, the one reader of older formats, passes them)."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_FILE
    if not bundle_dir.exists():
        raise BundleError(f"no bundle at {bundle_dir}: no such directory")
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir} is a file; a bundle is a directory (mof-export -o DIR makes one)")
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path} is {size} bytes (limit {MAX_MANIFEST_BYTES})")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir} is not a mof bundle (no {MANIFEST_FILE})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"cannot read {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{path} is not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if version in versions and not isinstance(version, bool):
        return Manifest(manifest, where=str(bundle_dir))
    if isinstance(version, int) and not isinstance(version, bool) and 0 < version < FORMAT_VERSION:
        raise BundleError(f"{bundle_dir} is in bundle format {version}, which this mof no longer runs; "
                          f"upgrade it with: mof-quantize --upgrade {bundle_dir}")
    raise BundleError(f"{path} has format_version {version!r}; this mof reads version {FORMAT_VERSION} "
                      "(update mof, or re-export the bundle with this one)")


def read_verified(bundle_dir: Path, manifest: dict[str, Any], name: str) -> bytes:
    """The bytes of a listed file, checked against the manifest at the moment they are read
    (so what onnxruntime gets is exactly what was verified — no swap after the check)."""
    rec = manifest.get("files", {}).get(name)
    if rec is None or not is_plain_name(name):
        raise BundleError(f"{bundle_dir}: {name!r} is not a file of this bundle")
    p = bundle_dir / name
    if p.is_symlink():
        raise BundleError(f"{bundle_dir}: {name} is a symbolic link; bundles hold regular files only")
    data = p.read_bytes()
    if len(data) != rec.get("bytes"):
        raise BundleError(f"{bundle_dir}: {name} is {len(data)} bytes, manifest says {rec.get('bytes')}")
    if hashlib.sha256(data).hexdigest() != rec.get("sha256"):
        raise BundleError(f"{bundle_dir}: {name} does not match its sha256 in the manifest")
    return data


def verify_bundle(bundle_dir: str | Path, hashed_when_read: Iterable[str] = (),
                  manifest: Manifest | None = None, versions: tuple[int, ...] = READABLE_VERSIONS) -> Manifest:
    """Read the manifest (unless the caller has: ``manifest``; ``versions``: as ``read_manifest``)
    and check every listed file's size and sha256. Returns the manifest.

    Files named in ``hashed_when_read`` get every check but the sha256, which the caller does
    on the bytes it then uses (``read_verified``) — so large graphs are hashed once, not twice."""
    hashed_when_read = set(hashed_when_read)
    bundle_dir = Path(bundle_dir)
    if manifest is None:
        manifest = read_manifest(bundle_dir, versions)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{bundle_dir}: manifest lists no files")
    for name, rec in files.items():
        if not is_plain_name(name):
            raise BundleError(f"{bundle_dir}: manifest names an unsafe file path {name!r}")
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
            raise BundleError(f"{bundle_dir}: manifest entry for {name} has no sha256")
        p = bundle_dir / name
        if p.is_symlink():
            raise BundleError(f"{bundle_dir}: {name} is a symbolic link; bundles hold regular files only")
        if not p.is_file():
            raise BundleError(f"{bundle_dir}: {name} is missing")
        if p.stat().st_nlink > 1:
            raise BundleError(f"{bundle_dir}: {name} is hard-linked elsewhere; bundles hold their own files")
        size = p.stat().st_size
        if size != rec.get("bytes"):
            raise BundleError(f"{bundle_dir}: {name} is {size} bytes, manifest says {rec.get('bytes')}")
        if name not in hashed_when_read and sha256_file(p) != rec["sha256"]:
            raise BundleError(f"{bundle_dir}: {name} does not match its sha256 in the manifest")
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict):
        raise BundleError(f"{bundle_dir}: manifest has no 'graphs' section")
    for gname, graph in graphs.items():
        if not isinstance(graph, dict):
            raise BundleError(f"{bundle_dir}: graph {gname!r} is not described by an object")
        for key in PRECISIONS + tuple(native_key(p) for p in NATIVE_PRECISIONS):
            fname = graph.get(key)
            if fname is not None and (not isinstance(fname, str) or fname not in files):
                raise BundleError(f"{bundle_dir}: graph {gname}.{key} file {fname!r} is not in the "
                                  "manifest's files")
    weights = manifest.get("weights", {})
    if not isinstance(weights, dict) or any(
            not isinstance(f, str) or f not in files for f in weights.values()):
        raise BundleError(f"{bundle_dir}: manifest's 'weights' must name files of the bundle, "
                          f"got {weights!r}")
    return manifest


def file_identity(path: Path) -> tuple:
    """What changes when a file is written, replaced or renamed over: device, inode, size and
    modification and change times (ctime cannot be set back by a user program)."""
    st = os.stat(path, follow_symlinks=False)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_unchanged(bundle_dir: Path, before: dict[str, tuple]) -> None:
    """Files that onnxruntime opened itself must be the ones that were hashed: same identity as
    before the hash check (``before``: name -> file_identity)."""
    for name, ident in before.items():
        try:
            now = file_identity(bundle_dir / name)
        except OSError:
            now = None
        if now != ident:
            raise BundleError(f"{bundle_dir}: {name} changed while the bundle was being loaded")
