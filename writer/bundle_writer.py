"""Writing a bundle directory atomically: everything is built in a hidden temporary directory
beside the target and renamed into place at the end, so a failure or Ctrl-C leaves either the
old bundle or nothing, never a half-written one. mof-export and mof-quantize write through it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mof.runtime.bundle import file_record, is_bundle_dir, is_plain_name
from mof.runtime.contract import MANIFEST_FILE
from mof.runtime.errors import MofError

from .manifest import write_manifest


def check_writable_target(target: Path, force: bool) -> None:
    """Fail early (before minutes of work) if ``target`` cannot become a bundle."""
    if target.exists() or target.is_symlink():
        if not force:
            raise MofError(f"{target} already exists (use --force to replace it)")
        if target.is_symlink() or not target.is_dir():
            raise MofError(f"{target} exists and is not a directory; refusing to replace it")
        if any(target.iterdir()) and not is_bundle_dir(target):
            raise MofError(
                f"{target} exists and is not a mof bundle; refusing to replace it even with --force")
    parent = target.parent
    if not parent.is_dir():
        raise MofError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise MofError(f"output folder {parent} is not writable")


class BundleWriter:
    """Build a bundle in a temporary directory; ``commit`` moves it into place.

        with BundleWriter(target, force) as w:
            save_graph(w.path("full.onnx"))
            w.commit(manifest)          # adds manifest["files"], writes manifest.json, renames
    """

    def __init__(self, target: str | Path, force: bool = False):
        self.target = Path(target).absolute()
        self.force = force
        self.tmp: Path | None = None
        self.committed = False

    def __enter__(self) -> "BundleWriter":
        check_writable_target(self.target, self.force)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-", dir=self.target.parent))
        return self

    def path(self, name: str) -> Path:
        assert self.tmp is not None and is_plain_name(name), name
        return self.tmp / name

    def commit(self, manifest: dict[str, Any]) -> Path:
        assert self.tmp is not None
        files = {}
        for p in sorted(self.tmp.iterdir()):
            if p.name != MANIFEST_FILE:
                files[p.name] = file_record(p)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)   # mkdtemp makes it 0700
        write_manifest(self.tmp, manifest, files)
        # Re-check at the last moment: something may have appeared meanwhile.
        check_writable_target(self.target, self.force)
        old = None
        if self.target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.old-", dir=self.target.parent))
            os.rmdir(old)
            os.rename(self.target, old)
        try:
            os.rename(self.tmp, self.target)
        except OSError:
            if old is not None:
                os.rename(old, self.target)
            raise
        self.tmp = None
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.target

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
