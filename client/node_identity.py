"""Who this node is (its key), and what it last wrote to its ledger (a state file beside it).

A site's budget must follow the node, not a name in its config or a path the ledger happens
to sit at: the identity is the SHA-256 of the node's public key (the key it authenticates to
the SuperLink with), and ``KEY.ledger-state.json`` beside the key remembers how many rows the
ledger had and its last row's hash. A ledger that is missing, emptied or swapped for an older
copy while the state says otherwise is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.core.atomic import write_bytes
from federation.core.errors import ConfigError, PrivacyBudgetError
from federation.core.key_files import (
    ssh_private,
    ssh_public,
    write_private,
    write_public,
)

STATE_SUFFIX = ".ledger-state.json"


class LedgerError(PrivacyBudgetError):
    """The ledger cannot be trusted (tampered, replaced, another node's): the site refuses.

    ``public`` is what may leave the site (no path); the message itself stays in its log.
    """

    def __init__(self, message: str, *, public: str) -> None:
        super().__init__(message)
        self.public = public


def create_node_key(site: str, out: Path) -> tuple[Path, Path]:
    """A site's node-authentication key pair: ``SITE.key`` (0600) and ``SITE.pub``.

    EC P-384 in OpenSSH form: the SuperNode reads the private half, the coordinator registers
    the public half (``lhsfed pki node-key`` calls this; a simulated site makes its own).
    """
    key = ec.generate_private_key(ec.SECP384R1())
    private = write_private(Path(out) / f"{site}.key", ssh_private(key))
    public = write_public(Path(out) / f"{site}.pub", ssh_public(key) + f" {site}\n".encode())
    return private, public


def _public_bytes(key_path: Path) -> bytes:
    data = key_path.read_bytes()
    loaders = (serialization.load_ssh_private_key, serialization.load_pem_private_key)
    for load in loaders:
        try:
            key = load(data, password=None)
        except (ValueError, TypeError, serialization.UnsupportedAlgorithm):
            continue
        return key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    raise ConfigError(
        f"node config 'node-key' {key_path}: not an unencrypted OpenSSH or PEM "
        "private key; give the SITE.key that `lhsfed pki node-key` wrote"
    )


@dataclass(frozen=True)
class NodeIdentity:
    """The node's key fingerprint and where its ledger state is kept."""

    fingerprint: str
    state_path: Path

    @classmethod
    def of_key(
        cls, key_path: Path, *, create: bool = False, site: str = "site", state_path: Path | None = None
    ) -> "NodeIdentity":
        """The identity of ``key_path``; ``create`` (simulation) makes a key if there is none.

        ``state_path`` (node config ``node-state``) is where the ledger state is kept when the
        key's folder is read-only (a mounted secret); default ``KEY.ledger-state.json``."""
        key_path = Path(key_path)
        if not key_path.is_file():
            if not create:
                raise ConfigError(
                    f"node config 'node-key' {key_path}: file not found; give this "
                    "node's private key (SITE.key)"
                )
            created, _ = create_node_key(site, key_path.parent)
            created.rename(key_path)
        fingerprint = hashlib.sha256(_public_bytes(key_path)).hexdigest()
        return cls(
            fingerprint, Path(state_path) if state_path else key_path.with_name(key_path.name + STATE_SUFFIX)
        )

    @property
    def genesis(self) -> str:
        """The 'previous hash' of a ledger's first row: ties row 1 to this node."""
        return hashlib.sha256(f"lhsfed-ledger:{self.fingerprint}".encode()).hexdigest()

    def _state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            raise LedgerError(
                f"node ledger state {self.state_path} is unreadable; restore it "
                "with the ledger from their backup",
                public="ledger state unreadable",
            ) from None

    def check_state(self, ledger: Path, digests: list[str]) -> None:
        """Refuse a ledger that lacks the last row this node remembers writing."""
        state = self._state()
        if not state or not state.get("entries"):
            return
        if not digests:
            raise LedgerError(
                f"privacy ledger {ledger} is missing or empty, but this node's state "
                f"({self.state_path}) records {state['entries']} entries: its spending would "
                "restart from zero; restore the ledger from its backup (docs/privacy.md)",
                public=f"ledger missing or emptied (the node recorded {state['entries']} entries)",
            )
        if state.get("head") not in digests:
            raise LedgerError(
                f"privacy ledger {ledger} does not hold the last entry this node wrote "
                f"(entry {state['entries']}): it was replaced by another or an older copy; "
                "restore the latest backup (docs/privacy.md)",
                public="ledger replaced or rolled back (it lacks the node's last entry)",
            )

    def record_state(self, ledger: Path, digests: list[str]) -> None:
        """Remember the ledger's length and head (atomic write; never shrinks)."""
        state = self._state() or {}
        if len(digests) < int(state.get("entries", 0)):
            return
        record = {
            "identity": self.fingerprint,
            "ledger": str(ledger),
            "entries": len(digests),
            "head": digests[-1] if digests else None,
        }
        try:
            write_bytes(self.state_path, json.dumps(record, indent=1).encode())
        except OSError as err:
            raise ConfigError(
                f"node ledger state {self.state_path} cannot be written ({err}); the "
                "node key's folder must be writable"
            ) from None
        self.state_path.chmod(0o600)
