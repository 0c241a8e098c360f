"""The federation's keys and certificates, in the forms Flower 1.41 reads.

- Federation CA (EC P-384, self-signed) and the SuperLink's TLS certificate signed by it;
  SuperNodes trust the CA through ``--root-certificates``.
- A site's node-authentication key: EC P-384 in OpenSSH format. The SuperNode reads the
  private half (``--auth-supernode-private-key``, ``load_ssh_private_key``); the coordinator
  registers the public half with the SuperLink (``flwr supernode register`` accepts only an
  OpenSSH NIST-curve EC public key).
- An app-signing key: Ed25519 in OpenSSH format, the only kind a SuperNode's
  ``--trusted-entities`` file accepts.

Private keys are written 0600, created exclusively, and never printed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import struct
import time
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from client import node_identity
from federation.core.errors import ConfigError
from federation.core.input_files import require_file
from federation.core.key_files import (
    ssh_private,
    ssh_public,
    write_private,
    write_public,
)

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "superlink.pem", "superlink.key"
VALID_DAYS = 825  # the longest lifetime browsers and most TLS stacks accept for a leaf
# The SuperLink listens on loopback behind its proxy: the proxy, the SuperExec and the
# coordinator's own `flwr` calls reach it as 127.0.0.1 / localhost, so every server
# certificate names them too.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read_key_file(path: Path, *, what: str, fix: str) -> bytes:
    return require_file(path, what=what, fix=fix, error=ConfigError).read_bytes()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lhs-federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )


def create_ca(out: Path, name: str = "lhs-federation CA") -> Path:
    """Federation CA under ``out``: ca.key (0600) and ca.pem (what every site trusts)."""
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        _builder(_name(name), _name(name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA384())
    )
    write_private(Path(out) / CA_KEY, _pem_key(key))
    return write_public(Path(out) / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))


def _subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def load_ca(ca_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = Path(ca_dir) / CA_KEY, Path(ca_dir) / CA_CERT
    missing = [str(p) for p in (key_path, cert_path) if not p.is_file()]
    if missing:
        raise ConfigError(f"CA files not found: {', '.join(missing)}; run `lhsfed pki init` first")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ConfigError(
            f"{ca_dir}: {CA_KEY} / {CA_CERT} are not the CA's PEM key and "
            f"certificate ({_first_line(err)}); use the folder `lhsfed pki init` "
            "wrote"
        ) from None
    return key, cert


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


PRIVATE_MARKERS = (b"PRIVATE KEY",)  # "-----BEGIN OPENSSH PRIVATE KEY-----", PKCS#8, SEC1


def _refuse_private(path: Path, data: bytes, fix: str) -> None:
    """A private key given where a public one is expected: say so, never parse or echo it."""
    if any(marker in data[:200] for marker in PRIVATE_MARKERS):
        raise ConfigError(f"{path}: is a PRIVATE key, which must never leave its owner; {fix}")


def create_server_cert(ca_dir: Path, hosts: list[str], out: Path | None = None) -> Path:
    """SuperLink TLS key and certificate, signed by the CA, valid for every name in ``hosts``
    and for loopback (``LOOPBACK_HOSTS``)."""
    if not hosts:
        raise ConfigError("give at least one --host the SuperNodes will dial (DNS name or IP)")
    hosts = list(dict.fromkeys([*hosts, *LOOPBACK_HOSTS]))
    ca_key, ca_cert = load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        _builder(_name(hosts[0]), ca_cert.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    out = Path(out or ca_dir)
    write_private(out / SERVER_KEY, _pem_key(key))
    return write_public(out / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))


def create_node_key(site: str, out: Path) -> tuple[Path, Path]:
    """A site's node-authentication key pair: ``SITE.key`` (0600) and ``SITE.pub`` (made as the
    site makes its own: ``client.node_identity.create_node_key``)."""
    return node_identity.create_node_key(site, out)


def load_node_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """A site's public key as the coordinator received it; rejects anything Flower would."""
    fix = "send the SITE.pub file that `lhsfed pki node-key` wrote"
    data = _read_key_file(path, what="public key file", fix=fix)
    _refuse_private(path, data, f"the site keeps SITE.key; {fix}")
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ConfigError(f"{path}: not an OpenSSH public key ({_first_line(err)}); {fix}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise ConfigError(f"{path}: node keys must be NIST-curve EC keys (lhsfed pki node-key)")
    return key


# --- app signing (Flower's FAB verification: ed25519 over timestamp + sha256(FAB)) ---


def create_signing_key(publisher: str, out: Path) -> tuple[Path, Path]:
    """The publisher's Ed25519 app-signing key pair: ``PUBLISHER.sign.key`` and ``.sign.pub``."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = write_private(Path(out) / f"{publisher}.sign.key", ssh_private(key))
    public = write_public(Path(out) / f"{publisher}.sign.pub", ssh_public(key) + f" {publisher}\n".encode())
    return private, public


def load_signing_key(path: Path) -> ed25519.Ed25519PrivateKey:
    fix = "create it with `lhsfed pki signing-key`"
    data = _read_key_file(path, what="signing key", fix=fix)
    try:
        key = serialization.load_ssh_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ConfigError(
            f"{path}: not an OpenSSH private key ({_first_line(err)}); "
            f"give the PUBLISHER.sign.key file; {fix}"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path}: app-signing keys must be Ed25519")
    return key


def signed_message(fab: bytes, signed_at: int) -> bytes:
    """What Flower 1.41's SuperNode verifies: 8-byte big-endian timestamp + sha256(FAB)."""
    return struct.pack(">Q", signed_at) + hashlib.sha256(fab).digest()


def sign_fab(fab: bytes, key: ed25519.Ed25519PrivateKey, signed_at: int | None = None) -> dict:
    """A verification record for ``fab``: base64url signature (unpadded) and its time."""
    signed_at = int(time.time()) if signed_at is None else signed_at
    signature = key.sign(signed_message(fab, signed_at))
    return {"signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode(), "signed_at": signed_at}


def public_key_id(public_line: bytes) -> str:
    """Stable id of a signing key for the trusted-entities file (``fpk_`` + hash prefix)."""
    return "fpk_" + hashlib.sha256(public_line.split()[1]).hexdigest()[:32]
