"""``lhsfed nodes``: the hospitals' nodes the SuperLink knows, by site name and status.

For the coordinator, on the SuperLink host (the Control API listens on its loopback only):
``lhsfed nodes --superlink 127.0.0.1:9093 --ca-cert pki/ca.pem``. Names are those given to
``lhsfed pki register SITE``; a SIGKILLed node still reads ``online`` until its heartbeat
expires (at most 60 s, docs/deployment.md).
"""

from __future__ import annotations

from pathlib import Path

from federation.cli.pki import DEFAULT_DIR

HEADER = ("SITE", "NODE ID", "STATUS")


def format_rows(rows) -> list[str]:
    """Aligned text lines: a header, then one line per node."""
    table = [HEADER, *((row.site, str(row.node_id), row.status) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(2)]
    return [f"{site:<{widths[0]}}  {node:<{widths[1]}}  {status}" for site, node, status in table]


def run(args) -> int:
    from federation.coordinator.superlink_nodes import list_nodes
    from federation.security.pki import CA_CERT

    rows = list_nodes(args.superlink, args.ca_cert or DEFAULT_DIR / CA_CERT)
    print("\n".join(format_rows(rows)))
    if not rows:
        print("no nodes registered yet (lhsfed pki register SITE SITE.pub ...)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("nodes", help="list hospital nodes by site name and status")
    parser.add_argument(
        "--superlink",
        default="127.0.0.1:9093",
        help="HOST:PORT of the SuperLink's loopback port (default 127.0.0.1:9093)",
    )
    parser.add_argument(
        "--ca-cert",
        type=Path,
        default=None,
        help=f"the federation CA certificate (default: the one in {DEFAULT_DIR})",
    )
    parser.set_defaults(func=run)
