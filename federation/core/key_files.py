"""Key files as the federation writes them: a secret is 0600, created exclusively, never
overwritten; keys in OpenSSH form (what Flower's SuperNode and SuperLink read).

Shared by the site (its node key, ``client.node_identity``) and the coordinator's PKI
(``federation.security.pki``), so both write keys one way.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from federation.core.errors import ConfigError


def write_private(path: Path, data: bytes) -> Path:
    """Write a secret readable by its owner only; never overwrite an existing key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; move it away to create a new key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def hand_over(path: Path, *, uid: int, gid: int | None = None) -> str | None:
    """Give a private key to the account that must read it (a container's user, e.g. uid
    49999), keeping it 0600. As root: ``chown``, returns None. Otherwise nothing changes and
    the one command that does it is returned (a caller prints it)."""
    path = Path(path)
    owner = f"{uid}" if gid is None else f"{uid}:{gid}"
    current = path.stat()
    if current.st_uid == uid and gid in (None, current.st_gid):
        return None
    if os.geteuid() == 0:
        os.chown(path, uid, -1 if gid is None else gid)
        return None
    return (
        f"{path} is owned by uid {current.st_uid}, not {uid}: run `sudo chown {owner} {path}` "
        f"(rootless podman: `podman unshare chown {owner} {path}`) so that the container can read it"
    )


def write_public(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def ssh_private(key) -> bytes:
    """An unencrypted OpenSSH private key file's bytes."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )


def ssh_public(key) -> bytes:
    """OpenSSH one-line public key (``ecdsa-sha2-nistp384 ...`` or ``ssh-ed25519 ...``)."""
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
