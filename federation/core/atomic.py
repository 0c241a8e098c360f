"""Write-then-rename file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _staged(path: Path, data: bytes) -> Path:
    """``data`` in a temporary file beside ``path``, fsync'd: ready to be moved or linked in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (fsync'd before the rename)."""
    path = Path(path)
    tmp = _staged(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def torch_save(path: Path, obj: Any) -> None:
    import torch  # here, not at import: light CLI commands (site check) never load torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync it (a JSONL log grows one whole record at a time)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def create_bytes(path: Path, data: bytes) -> bool:
    """Write ``path`` only if it does not exist yet, atomically (False: it existed, untouched).

    Written to a temporary file, then hard-linked into place: the link fails if the name is
    taken, so of two writers racing for one name exactly one wins and nobody overwrites.
    """
    path = Path(path)
    tmp = _staged(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
