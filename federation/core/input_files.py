"""Checks on the paths a command is given, so a wrong path fails with one line that says why.

A folder where a file is expected is reported as a folder (not "file not found"), an output
that is one of the inputs (same file by any path, symlink or hard link) is refused before
anything is written, and an output folder that is a file is refused before any key is made.
"""

from __future__ import annotations

import os
from pathlib import Path

from federation.core.errors import ConfigError, DataError


def require_file(path: Path, *, what: str, fix: str, error: type[Exception] = DataError) -> Path:
    """``path`` if it is a readable file; else one ``error`` naming what is wrong and ``fix``."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory, not a {what}; {fix}")
    if not path.is_file():
        raise error(f"{path}: {what} not found; {fix}")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: {what} is not readable (permission denied); {fix}")
    return path


def same_file(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name one file: same resolved path, or same inode."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def require_output_file(path: Path, *, option: str, inputs: dict[str, Path]) -> Path:
    """An output file that may be (re)written: not a folder and none of ``inputs``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give the file to write")
    for name, source in inputs.items():
        if same_file(path, source):
            raise ConfigError(
                f"{option} {path} is the same file as {name} {source}; "
                f"write to another file so the input stays as it is"
            )
    return path


def require_output_folder(path: Path, *, option: str) -> Path:
    """An output folder: missing (it will be created) or a folder, never an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{option} {path}: is a file, not a folder; give a folder to write into (nothing was written)"
        )
    return path


def refuse_file_as_folder(path: Path | None, *, option: str) -> Path | None:
    """An input folder option (``--data-dir``): refused if it names a file."""
    if path is not None and Path(path).is_file():
        raise ConfigError(
            f"{option} {path}: is a file, not a folder; give the folder that holds the sites' files"
        )
    return path
