"""Writing files so that a reader sees the old content or the new, never half of one; the saved-state
file format that conversations and the server's state cache share."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import MofError


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# A saved state: one .npz holding a JSON "meta" string and a State's arrays (State.to_arrays) under
# STATE_PREFIX. ChatSession.save/load and mof-serve's state cache both write and read it.
STATE_PREFIX = "state."


def write_state_npz(path: str | os.PathLike, meta: dict, state=None) -> int:
    """Atomically write ``meta`` and ``state`` (a State, or None); returns the file's size."""
    arrays = {"meta": np.array(json.dumps(meta, ensure_ascii=False))}
    if state is not None:
        arrays.update(state.to_arrays(prefix=STATE_PREFIX))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    atomic_write(path, data)
    return len(data)


def read_state_npz(path: str | os.PathLike, max_bytes: int, what: str) -> tuple[object, dict[str, np.ndarray]]:
    """The meta (parsed JSON, not yet checked) and the state arrays of a file ``write_state_npz``
    wrote; parsed without pickles. MofError, naming ``what`` the file should be, on anything else."""
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            raise MofError(f"{path} is too large to be {what}")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k.startswith(STATE_PREFIX)}
    except MofError:
        raise
    except FileNotFoundError:
        raise MofError(f"{path} does not exist") from None
    except Exception as e:   # np.load / json raise many types on junk (EOFError, BadZipFile, ...)
        raise MofError(f"{path} is not {what} ({type(e).__name__})") from None
    return meta, arrays
