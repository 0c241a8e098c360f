"""``lhsfed pki``: the federation's keys, from CA to a registered hospital node.

Coordinator: ``init``, ``server-cert``, ``register``, ``signing-key``, ``sign-app``.
Hospital IT: ``node-key`` (send SITE.pub to the coordinator; SITE.key never leaves),
``trusted-entities`` (which app publishers this node accepts).
Paths are printed, key material never is. The security layer (``cryptography``) is imported
by each handler, so building the parser stays light.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from federation.cli.arguments import at_least
from federation.core.input_files import require_output_file, require_output_folder

DEFAULT_DIR = Path("pki")
# A site or publisher name becomes a file name (SITE.key) and a SuperLink node name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def name(text: str) -> str:
    """argparse type: a name that is safe as a file name (no folder, no leading dot)."""
    if not NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid name: use letters, digits, '_', '.' or '-' (at most 63, "
            "starting with a letter or digit), e.g. cleveland"
        )
    return text


def _out_folder(args) -> Path:
    return require_output_folder(args.out, option="--out")


def _hand_over(key: Path, args) -> None:
    """``--owner-uid``: the key goes to the container's user (chown as root, else one line
    saying what to run)."""
    from federation.core.errors import ConfigError
    from federation.core.key_files import hand_over

    if args.owner_uid is None:
        if args.owner_gid is not None:
            raise ConfigError("--owner-gid needs --owner-uid (the user the container runs as, e.g. 49999)")
        return
    todo = hand_over(key, uid=args.owner_uid, gid=args.owner_gid)
    print(f"{key}: owner {args.owner_uid} (0600)" if todo is None else f"to do: {todo}")


def _add_owner_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--owner-uid",
        type=at_least(0),
        default=None,
        help="give the private key to this user (the images run as uid 49999, user app): "
        "chown as root, otherwise print the command to run",
    )
    parser.add_argument(
        "--owner-gid", type=at_least(0), default=None, help="and to this group (with --owner-uid)"
    )


def _init(args) -> int:
    from federation.security import pki

    _out_folder(args)
    cert = pki.create_ca(args.out)
    print(
        f"federation CA: {cert} (give it to every site); its key {args.out / pki.CA_KEY} "
        "stays with the coordinator"
    )
    return 0


def _server_cert(args) -> int:
    from federation.security import pki

    if args.out is not None:
        _out_folder(args)
    cert = pki.create_server_cert(args.ca_dir, args.host, args.out)
    print(f"SuperLink TLS certificate: {cert} for {', '.join(args.host)}")
    _hand_over(cert.with_name(pki.SERVER_KEY), args)
    return 0


def _node_key(args) -> int:
    from federation.security import pki

    _out_folder(args)
    private, public = pki.create_node_key(args.site, args.out)
    print(
        f"node key for {args.site}: {private} (0600, stays on this machine); send {public} to the coordinator"
    )
    _hand_over(private, args)
    return 0


def _register(args) -> int:
    from federation.coordinator.flwr_connection import register_node
    from federation.security import pki

    pki.load_node_public_key(args.pubkey)
    ca_cert = args.ca_cert or DEFAULT_DIR / pki.CA_CERT
    node_id = register_node(args.superlink, ca_cert, args.pubkey, args.site)
    print(f"registered {args.site} as node {node_id} at {args.superlink}")
    return 0


def _signing_key(args) -> int:
    from federation.security import pki

    _out_folder(args)
    private, public = pki.create_signing_key(args.publisher, args.out)
    print(
        f"app-signing key: {private} (0600); public key {public} "
        f"(id {pki.public_key_id(public.read_bytes())})"
    )
    return 0


def _trusted_entities(args) -> int:
    from federation.security.app_signing import write_trusted_entities

    require_output_file(
        args.out, option="--out", inputs={f"public key {i}": k for i, k in enumerate(args.pubkey, 1)}
    )
    path = write_trusted_entities(args.out, args.pubkey)
    print(f"trusted entities: {path}")
    return 0


def _sign_app(args) -> int:
    from federation.security import pki
    from federation.security.app_signing import sign_app

    _out_folder(args)
    pki.load_signing_key(args.key)  # a wrong key file fails before the bundle is built
    fab, verification = sign_app(args.app, args.key, args.out)
    print(f"signed app bundle: {fab}; verification: {verification}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("pki", help="federation CA, TLS and node keys")
    sub = parser.add_subparsers(dest="pki_command", required=True)

    p = sub.add_parser("init", help="create the federation CA (coordinator)")
    p.add_argument("--out", type=Path, default=DEFAULT_DIR)
    p.set_defaults(func=_init)

    p = sub.add_parser("server-cert", help="SuperLink TLS certificate signed by the CA")
    p.add_argument(
        "--host", action="append", required=True, help="DNS name or IP the SuperNodes dial (repeat for more)"
    )
    p.add_argument("--ca-dir", type=Path, default=DEFAULT_DIR)
    p.add_argument("--out", type=Path, default=None, help="default: the CA folder")
    _add_owner_options(p)
    p.set_defaults(func=_server_cert)

    p = sub.add_parser("node-key", help="a site's node-authentication key pair (hospital IT)")
    p.add_argument("site", type=name)
    p.add_argument("--out", type=Path, default=Path("."))
    _add_owner_options(p)
    p.set_defaults(func=_node_key)

    p = sub.add_parser("register", help="allow a site's public key on the SuperLink")
    p.add_argument("site", type=name)
    p.add_argument("pubkey", type=Path)
    p.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    p.add_argument(
        "--ca-cert",
        type=Path,
        default=None,
        help=f"the federation CA certificate (default: the one in {DEFAULT_DIR})",
    )
    p.set_defaults(func=_register)

    p = sub.add_parser("signing-key", help="the app publisher's Ed25519 signing key")
    p.add_argument("publisher", type=name)
    p.add_argument("--out", type=Path, default=DEFAULT_DIR)
    p.set_defaults(func=_signing_key)

    p = sub.add_parser("sign-app", help="build this app's bundle (FAB) and sign it")
    p.add_argument("--app", type=Path, default=Path("."), help="Flower app folder")
    p.add_argument("--key", type=Path, required=True, help="PUBLISHER.sign.key")
    p.add_argument("--out", type=Path, default=Path("signed-app"))
    p.set_defaults(func=_sign_app)

    p = sub.add_parser("trusted-entities", help="the YAML a SuperNode's --trusted-entities reads")
    p.add_argument("pubkey", type=Path, nargs="+", help="PUBLISHER.sign.pub files")
    p.add_argument("--out", type=Path, default=Path("trusted-entities.yaml"))
    p.set_defaults(func=_trusted_entities)
