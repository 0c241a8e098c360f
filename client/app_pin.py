"""Does a run's app bundle (FAB) match what this site pinned? Pure checks, no IO but reading
the installed package's own files.

The coordinator builds the FAB, so nothing in it is trusted: the identity is read from the
FAB's own ``pyproject.toml`` (not from the run record the coordinator's SuperLink sends), and
the ClientApp code it carries is compared file by file (SHA-256) with the code installed in
this site's image. The check only *reads* the archive; no file of it is written, put on
``sys.path`` or imported.

A bundle is a zip: a 1 MB one can expand to gigabytes. Sizes are checked from the archive's
own directory before anything is decompressed: ``pyproject.toml`` must declare at most
:data:`MAX_METADATA_BYTES`, and a member under a pinned package is read only if it declares
exactly the installed file's size (any other size already differs), then hashed in
:data:`CHUNK_BYTES` chunks. Python's zipfile stops at the declared size (and fails the CRC
of a member that goes on), so what the check holds in memory is bounded by the installed
code, whatever the bundle claims.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

from flwr.cli.utils import build_pathspec
from flwr.common.config import get_fab_config, get_metadata_from_config
from flwr.common.constant import FAB_EXCLUDE_PATTERNS, FAB_INCLUDE_PATTERNS

CLIENT_APP_REF = "client.app:app"
# The packages the ClientApp imports at a site: a bundle that carries any of them must carry
# exactly the installed files (as Flower's own FAB builder would pack them).
PINNED_PACKAGES = ("client", "federation")
DEFAULT_PIN = "lhs-federation/lhs-federation-run"  # what `lhsfed-train federation=deployment` sends
NOT_PINNED = "app not pinned by this site"
METADATA = "pyproject.toml"
MAX_METADATA_BYTES = 1 << 20  # a real pyproject.toml is a few kB
CHUNK_BYTES = 1 << 16


class InstalledFile(NamedTuple):
    """An installed file as a bundle must carry it: its size and SHA-256."""

    size: int
    sha256: str


@dataclass(frozen=True)
class AppPin:
    """``PUBLISHER/NAME`` or ``PUBLISHER/NAME==VERSION`` (the FAB's identity in Flower)."""

    fab_id: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> AppPin:
        fab_id, _, version = text.strip().partition("==")
        if fab_id.count("/") != 1 or not all(fab_id.split("/")) or (_ and not version):
            raise ValueError(
                f"LHSFED_APP_PIN={text!r}: give PUBLISHER/NAME or "
                f"PUBLISHER/NAME==VERSION (default {DEFAULT_PIN})"
            )
        return cls(fab_id, version or None)


def _packed(paths: list[str]) -> list[str]:
    """The paths Flower's FAB builder keeps (its built-in include and exclude rules)."""
    include, exclude = build_pathspec(FAB_INCLUDE_PATTERNS), build_pathspec(FAB_EXCLUDE_PATTERNS)
    return [p for p in paths if include.match_file(p) and not exclude.match_file(p)]


def installed_code(package_dirs: dict[str, Path]) -> dict[str, InstalledFile]:
    """Size and SHA-256 of every file of the installed packages a FAB built from them would carry."""
    files = {
        f"{name}/{path.relative_to(folder).as_posix()}": path
        for name, folder in package_dirs.items()
        for path in folder.rglob("*")
        if path.is_file()
    }
    return {
        rel: InstalledFile(files[rel].stat().st_size, hashlib.sha256(files[rel].read_bytes()).hexdigest())
        for rel in _packed(list(files))
    }


def _member_sha256(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    digest = hashlib.sha256()
    with archive.open(info) as member:
        while chunk := member.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_code(fab: bytes, installed: dict[str, InstalledFile]) -> dict[str, str | None]:
    """SHA-256 of every file the FAB carries under a pinned package; None (unread) for one
    whose declared size is not the installed file's."""
    with zipfile.ZipFile(BytesIO(fab)) as archive:
        members = [
            i for i in archive.infolist() if i.filename.split("/", 1)[0] in PINNED_PACKAGES and not i.is_dir()
        ]
        return {
            i.filename: (
                _member_sha256(archive, i)
                if i.filename in installed and i.file_size == installed[i.filename].size
                else None
            )
            for i in members
        }


def code_differences(fab: bytes, installed: dict[str, InstalledFile]) -> list[str]:
    """Bundle paths whose content differs from the installed code (none: the same code).

    A bundle may leave a package out (then the installed one runs, as it would under Flower);
    a package it carries must be complete and byte-identical.
    """
    carried = bundle_code(fab, installed)
    packages = {path.split("/", 1)[0] for path in carried}
    expected = {p: f.sha256 for p, f in installed.items() if p.split("/", 1)[0] in packages}
    return sorted(
        p for p in carried.keys() | expected.keys() if carried.get(p) is None or carried[p] != expected.get(p)
    )


def metadata_problems(fab: bytes) -> list[str]:
    """A ``pyproject.toml`` that declares more than :data:`MAX_METADATA_BYTES` (read by
    Flower's parser in one piece) is refused unread."""
    try:
        with zipfile.ZipFile(BytesIO(fab)) as archive:
            size = archive.getinfo(METADATA).file_size
    except (KeyError, zipfile.BadZipFile):
        return []  # identity_problems names it
    if size <= MAX_METADATA_BYTES:
        return []
    return [f"bundle {METADATA} declares {size} bytes (more than {MAX_METADATA_BYTES}), refused unread"]


def identity_problems(fab: bytes, pin: AppPin) -> list[str]:
    """Why the FAB's own identity is not the pinned one (empty: it is)."""
    if oversized := metadata_problems(fab):
        return oversized
    try:
        config = get_fab_config(fab)
        fab_id, version = get_metadata_from_config(config)
        clientapp = config["tool"]["flwr"]["app"]["components"]["clientapp"]
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        return [f"unreadable bundle metadata ({type(err).__name__})"]
    problems = []
    if fab_id != pin.fab_id:
        problems.append(f"app {fab_id!r} is not the pinned {pin.fab_id!r}")
    if pin.version is not None and version != pin.version:
        problems.append(f"version {version!r} is not the pinned {pin.version!r}")
    if clientapp != CLIENT_APP_REF:
        problems.append(f"clientapp {clientapp!r} is not {CLIENT_APP_REF!r}")
    return problems


def pin_problems(fab: bytes, pin: AppPin, installed: dict[str, InstalledFile]) -> list[str]:
    """Every reason this site refuses the FAB, collected (empty: run the installed app)."""
    problems = identity_problems(fab, pin)
    try:
        changed = code_differences(fab, installed)
    except zipfile.BadZipFile:  # e.g. a member longer than it declares (its CRC fails)
        return problems or ["unreadable bundle (BadZipFile)"]
    return problems + [f"bundle file {path} differs from the installed code" for path in changed]
