"""``lhsfed pki``: keys in the forms Flower 1.41 reads, private halves 0600 and never printed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.cli.supernode.register import try_load_public_key
from flwr.supercore.fab import Fab
from flwr.supernode.cli.flower_supernode import _validate_public_keys_ed25519
from flwr.supernode.start_client_internal import _verify_fab

from federation.cli.main import main
from tests.helpers.deployment_net import REPO


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    out = capsys.readouterr()
    assert "PRIVATE KEY" not in out.out + out.err
    return out.out


def test_ca_and_server_certificate(tmp_path, capsys):
    _run(capsys, "pki", "init", "--out", str(tmp_path))
    _run(
        capsys,
        "pki",
        "server-cert",
        "--ca-dir",
        str(tmp_path),
        "--host",
        "127.0.0.1",
        "--host",
        "localhost",
        "--host",
        "link.example.org",
    )
    assert _mode(tmp_path / "ca.key") == 0o600 and _mode(tmp_path / "superlink.key") == 0o600
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "superlink.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "link.example.org"]


def test_server_certificate_always_names_loopback(tmp_path, capsys):
    """The proxy, the SuperExec and the coordinator reach the SuperLink on loopback."""
    _run(capsys, "pki", "init", "--out", str(tmp_path))
    _run(capsys, "pki", "server-cert", "--ca-dir", str(tmp_path), "--host", "link.example.org")
    cert = x509.load_pem_x509_certificate((tmp_path / "superlink.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["link.example.org", "localhost"]


def test_node_key_is_what_flower_registers_and_loads(tmp_path, capsys):
    out = _run(capsys, "pki", "node-key", "cleveland", "--out", str(tmp_path))
    private, public = tmp_path / "cleveland.key", tmp_path / "cleveland.pub"
    assert _mode(private) == 0o600
    assert private.read_text() not in out
    # `flwr supernode register` accepts the public key ...
    assert len(try_load_public_key(public)) > 0
    # ... and `flower-supernode --auth-supernode-private-key` loads the private one.
    assert isinstance(load_ssh_private_key(private.read_bytes(), None), ec.EllipticCurvePrivateKey)


def test_existing_key_is_never_overwritten(tmp_path, capsys):
    _run(capsys, "pki", "node-key", "va", "--out", str(tmp_path))
    before = (tmp_path / "va.key").read_bytes()
    assert main(["pki", "node-key", "va", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "va.key").read_bytes() == before


def test_register_rejects_a_key_flower_would_refuse(tmp_path, capsys):
    _run(capsys, "pki", "signing-key", "lhs", "--out", str(tmp_path))
    code = main(
        [
            "pki",
            "register",
            "va",
            str(tmp_path / "lhs.sign.pub"),
            "--superlink",
            "127.0.0.1:1",
            "--ca-cert",
            str(tmp_path / "none.pem"),
        ]
    )
    assert code == 2
    assert "NIST-curve EC" in capsys.readouterr().err


def _signed_app(tmp_path: Path, capsys) -> tuple[Fab, Path]:
    keys = tmp_path / "keys"
    _run(capsys, "pki", "signing-key", "lhs", "--out", str(keys))
    _run(capsys, "pki", "signing-key", "stranger", "--out", str(keys))
    _run(
        capsys,
        "pki",
        "sign-app",
        "--app",
        str(REPO),
        "--key",
        str(keys / "lhs.sign.key"),
        "--out",
        str(tmp_path / "signed"),
    )
    records = json.loads((tmp_path / "signed" / "verification.json").read_text())
    content = (tmp_path / "signed" / "app.fab").read_bytes()
    verifications = {
        r["public_key_id"]: json.dumps({k: v for k, v in r.items() if k != "public_key_id"}) for r in records
    }
    return Fab("", content, {**verifications, "valid_license": "Valid"}), keys


def _trusted(tmp_path: Path, capsys, *pubkeys: Path) -> dict:
    out = tmp_path / "trusted.yaml"
    _run(capsys, "pki", "trusted-entities", *map(str, pubkeys), "--out", str(out))
    entities = yaml.safe_load(out.read_text())
    _validate_public_keys_ed25519(entities)  # what flower-supernode does at start
    return entities


def test_signed_app_verifies_with_flowers_own_check(tmp_path, capsys):
    fab, keys = _signed_app(tmp_path, capsys)
    assert _verify_fab(fab, _trusted(tmp_path, capsys, keys / "lhs.sign.pub"))
    assert not _verify_fab(fab, _trusted(tmp_path, capsys, keys / "stranger.sign.pub"))
    tampered = Fab("", fab.content + b"x", fab.verifications)
    assert not _verify_fab(tampered, _trusted(tmp_path, capsys, keys / "lhs.sign.pub"))


def test_owner_uid_gives_the_keys_to_the_container_user(tmp_path, capsys, monkeypatch):
    """The images run as uid 49999 (user app): as root the keys are chown'd to it, still 0600."""
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    _run(capsys, "pki", "init", "--out", str(tmp_path))
    out = _run(
        capsys, "pki", "server-cert", "--ca-dir", str(tmp_path), "--host", "link", "--owner-uid", "49999"
    )
    out += _run(
        capsys,
        "pki",
        "node-key",
        "va",
        "--out",
        str(tmp_path),
        "--owner-uid",
        "49999",
        "--owner-gid",
        "49998",
    )

    for key in ("superlink.key", "va.key"):
        assert (tmp_path / key).stat().st_uid == 49999 and _mode(tmp_path / key) == 0o600
        assert f"{tmp_path / key}: owner 49999 (0600)" in out
    assert (tmp_path / "va.key").stat().st_gid == 49998
    assert (tmp_path / "ca.key").stat().st_uid == 0  # the CA key stays the coordinator's


def test_owner_uid_without_root_says_what_to_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = _run(capsys, "pki", "node-key", "va", "--out", str(tmp_path), "--owner-uid", "49999")

    key = tmp_path / "va.key"
    assert key.stat().st_uid == os.getuid()  # unchanged
    (line,) = [line for line in out.splitlines() if line.startswith("to do:")]
    assert f"run `sudo chown 49999 {key}`" in line and f"`podman unshare chown 49999 {key}`" in line


def test_owner_gid_alone_is_refused(tmp_path, capsys):
    assert main(["pki", "node-key", "va", "--out", str(tmp_path), "--owner-gid", "49999"]) == 2
    assert "--owner-gid needs --owner-uid" in capsys.readouterr().err
