"""One message to the real ClientApp of a simulated site, as the ServerApp sends it (the
caller stamps the sending process's identity: tests/unit/conftest.py ``as_the_server_process``)."""

from __future__ import annotations

from flwr.app import Context, Message, RecordDict

from client.app import app as client_app


def send_to_site(run_config: dict, message_type: str, content: RecordDict, *, partition: int) -> Message:
    """The reply of simulated site ``partition`` (its node config as the launcher sets it)."""
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": partition, "lhsfed-mode": "simulation"},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    return client_app(Message(content, dst_node_id=7, message_type=message_type), context)
