"""Which hospital nodes the SuperLink knows, by the site name they were registered under.

``flwr supernode ls`` prints node ids and owner account names only, yet Flower 1.41 keeps the
``--name`` given at registration (``NodeInfo.name``, returned by the Control API's
``ListNodes``). We ask that API directly, with the connection of the project's private Flower
home (``federation.coordinator.flwr_connection``), so names come from the SuperLink itself, never from a
second list the coordinator would have to keep in step.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
from flwr.proto.control_pb2 import ListNodesRequest  # pylint: disable=E0611
from flwr.supercore.control import ControlHttpClient

from federation.coordinator.flwr_connection import CONTROL_HINT, temporary_home
from federation.core.errors import ConfigError

UNNAMED = "-"  # a node registered without a name (e.g. by plain `flwr supernode register`)


@dataclass(frozen=True)
class NodeRow:
    """One registered node: its site name, Flower node id and status (``registered`` =
    never connected, ``online``, ``offline``, ``unregistered``)."""

    site: str
    node_id: int
    status: str


def _client(home: Path) -> ControlHttpClient:
    """A Control API client for the home's default connection (what ``flwr`` would use)."""
    config = tomllib.loads((home / "config.toml").read_text())["superlink"]
    connection = config[config["default"]]
    ca = connection.get("root-certificates")
    return ControlHttpClient.from_server_address(
        connection["address"],
        insecure=bool(connection.get("insecure", False)),
        root_certificates=Path(ca).read_bytes() if ca else None,
        interceptors=(),
    )


def _reason(address: str, err: httpx.HTTPError) -> str:
    text = str(err)
    if isinstance(err, httpx.HTTPStatusError) and err.response.status_code == 403:
        return CONTROL_HINT
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "TLS verification failed: --ca-cert is not the CA that signed the SuperLink's "
            "certificate (use the coordinator's pki/ca.pem)"
        )
    if isinstance(err, httpx.ConnectError):
        return (
            f"cannot connect to {address} ({text}); is the SuperLink running and is this "
            "its loopback port (LHSFED_PORT, default 9093)?"
        )
    return text


def list_nodes(address: str, ca_cert: Path) -> list[NodeRow]:
    """Every node registered at the SuperLink ``address`` (TLS with ``ca_cert``), by site."""
    with temporary_home(address, ca_cert) as home:
        client = _client(home)
        try:
            reply = client.ListNodes(ListNodesRequest())
        except httpx.HTTPError as err:
            raise ConfigError(f"listing nodes at {address} failed: {_reason(address, err)}") from None
        finally:
            client.close()
    rows = [
        NodeRow(node.name if node.HasField("name") else UNNAMED, node.node_id, node.status)
        for node in reply.nodes_info
    ]
    return sorted(rows, key=lambda row: (row.site, row.node_id))
