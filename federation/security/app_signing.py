"""Signed app bundles and the trusted-entities file a hospital's SuperNode checks them with.

Flower 1.41's SuperNode (``--trusted-entities``) runs an app only if its FAB carries a
verification record ``{public_key_id: {"signature", "signed_at"}}`` whose Ed25519 signature
over ``signed_at`` + sha256(FAB) checks out against a key in that file
(``flwr.supernode.start_client_internal._verify_fab``). We build the FAB with Flower's own
builder, sign it with ``federation.security.pki``, and write both next to each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from federation.core.errors import ConfigError
from federation.security import pki

FAB_FILE = "app.fab"
VERIFICATION_FILE = "verification.json"


def build_fab(app: Path) -> bytes:
    """The app bundle exactly as ``flwr run`` would build it."""
    from flwr.cli.build import build_fab_from_disk

    if not (Path(app) / "pyproject.toml").is_file():
        raise ConfigError(f"{app}: not a Flower app folder (no pyproject.toml)")
    return build_fab_from_disk(Path(app))


def verification_records(fab: bytes, key_path: Path) -> list[dict]:
    """Flower's verification list for ``fab``, signed with the key at ``key_path``."""
    key = pki.load_signing_key(key_path)
    record = pki.sign_fab(fab, key)
    return [{"public_key_id": pki.public_key_id(pki.ssh_public(key)), **record}]


def sign_app(app: Path, key_path: Path, out: Path) -> tuple[Path, Path]:
    """Build and sign the app: ``OUT/app.fab`` and ``OUT/verification.json``."""
    fab = build_fab(app)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / FAB_FILE).write_bytes(fab)
    (out / VERIFICATION_FILE).write_text(json.dumps(verification_records(fab, key_path), indent=1))
    return out / FAB_FILE, out / VERIFICATION_FILE


def write_trusted_entities(out: Path, public_keys: list[Path]) -> Path:
    """``{public_key_id: 'ssh-ed25519 ...'}`` for each publisher key the site trusts."""
    entities = {}
    for path in public_keys:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: signing public key not found")
        line = Path(path).read_bytes().strip()
        if not line.startswith(b"ssh-ed25519 "):
            raise ConfigError(f"{path}: trusted entities must be ssh-ed25519 public keys")
        entities[pki.public_key_id(line)] = line.decode()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(entities))
    return out
