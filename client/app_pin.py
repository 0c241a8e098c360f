"""Does a run's app bundle (FAB) match what this site pinned? Pure checks, no IO but reading
the installed package's own files.

The coordinator builds the FAB, so nothing in it is trusted: the identity is read from the
FAB's own ``pyproject.toml`` (not from the run record the coordinator's SuperLink sends), and
the ClientApp code it carries is compared file by file (SHA-256) with the code installed in
this site's image. The check only *reads* the archive; no file of it is written, put on
``sys.path`` or imported.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from flwr.cli.utils import build_pathspec
from flwr.common.config import get_fab_config, get_metadata_from_config
from flwr.common.constant import FAB_EXCLUDE_PATTERNS, FAB_INCLUDE_PATTERNS

CLIENT_APP_REF = "client.app:app"
# The packages the ClientApp imports at a site: a bundle that carries any of them must carry
# exactly the installed files (as Flower's own FAB builder would pack them).
PINNED_PACKAGES = ("client", "federation")
DEFAULT_PIN = "lhs-federation/lhs-federation-run"  # what `lhsfed-train federation=deployment` sends
NOT_PINNED = "app not pinned by this site"


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


def _digests(files: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


def _packed(paths: list[str]) -> list[str]:
    """The paths Flower's FAB builder keeps (its built-in include and exclude rules)."""
    include, exclude = build_pathspec(FAB_INCLUDE_PATTERNS), build_pathspec(FAB_EXCLUDE_PATTERNS)
    return [p for p in paths if include.match_file(p) and not exclude.match_file(p)]


def installed_code(package_dirs: dict[str, Path]) -> dict[str, str]:
    """SHA-256 of every file of the installed packages a FAB built from them would carry."""
    files = {
        f"{name}/{path.relative_to(folder).as_posix()}": path
        for name, folder in package_dirs.items()
        for path in folder.rglob("*")
        if path.is_file()
    }
    return {rel: hashlib.sha256(files[rel].read_bytes()).hexdigest() for rel in _packed(list(files))}


def bundle_code(fab: bytes) -> dict[str, str]:
    """SHA-256 of every file the FAB carries under a pinned package."""
    with zipfile.ZipFile(BytesIO(fab)) as archive:
        names = [
            n for n in archive.namelist() if n.split("/", 1)[0] in PINNED_PACKAGES and not n.endswith("/")
        ]
        return _digests({name: archive.read(name) for name in names})


def code_differences(fab: bytes, installed: dict[str, str]) -> list[str]:
    """Bundle paths whose content differs from the installed code (none: the same code).

    A bundle may leave a package out (then the installed one runs, as it would under Flower);
    a package it carries must be complete and byte-identical.
    """
    carried = bundle_code(fab)
    packages = {path.split("/", 1)[0] for path in carried}
    expected = {p: d for p, d in installed.items() if p.split("/", 1)[0] in packages}
    return sorted(p for p in carried.keys() | expected.keys() if carried.get(p) != expected.get(p))


def identity_problems(fab: bytes, pin: AppPin) -> list[str]:
    """Why the FAB's own identity is not the pinned one (empty: it is)."""
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


def pin_problems(fab: bytes, pin: AppPin, installed: dict[str, str]) -> list[str]:
    """Every reason this site refuses the FAB, collected (empty: run the installed app)."""
    problems = identity_problems(fab, pin)
    try:
        changed = code_differences(fab, installed)
    except zipfile.BadZipFile:
        return problems
    return problems + [f"bundle file {path} differs from the installed code" for path in changed]
