"""Run the real ServerApp loop and ClientApp in this process, without Ray or a SuperLink.

For tests and benchmarks that compare many configurations: the same ``run_federation`` and
the same ClientApp (with its DP state kept per node across rounds, as a SuperNode keeps it)
as ``lhsfed-train``, only the transport differs. A message and its reply are copied on
delivery, as serialization would; a ClientApp that raises answers with an error Message, as
Flower's runtimes do. Tests drive :class:`InProcessGrid` directly too (any node configs,
every reply kept in ``received``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self
from uuid import uuid4

import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.client.mod.utils import make_ffn
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from client.site_policy import MODE, SIMULATION
from federation.coordinator.apps import CLIENT_APP, load_app
from federation.core.settings import RunSettings, flatten_config

RUN_ID = 1


def partition_nodes(num_nodes: int) -> dict[int, dict[str, Any]]:
    """Node 1000 + i playing partition i, as the simulation's SuperNodes are configured, and
    marked as simulated (``lhsfed-mode``: the sites then take the simulation policy)."""
    return {
        1000 + i: {"partition-id": i, "num-partitions": num_nodes, MODE: SIMULATION} for i in range(num_nodes)
    }


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApp calls in this process, each with its own Context.

    Nodes are ``num_nodes`` partitions, or ``node_configs`` (node id -> node config). As a
    context manager it stamps the messages the caller builds as the ServerApp's (Flower's
    task identity), and clears that on exit.
    """

    def __init__(
        self,
        client_app,
        run_config: dict[str, Any],
        num_nodes: int = 0,
        mods: Iterable = (),
        *,
        node_configs: dict[int, dict] | None = None,
    ) -> None:
        self._call = make_ffn(client_app, list(mods))
        nodes = partition_nodes(num_nodes) if node_configs is None else node_configs
        self.contexts = {
            node: Context(
                run_id=RUN_ID,
                node_id=node,
                state=RecordDict(),
                node_config=dict(config),
                run_config=dict(run_config),
            )
            for node, config in nodes.items()
        }
        self.received: list[Message] = []  # every reply, in order (what the server side saw)
        self._replies: dict[str, Message] = {}
        self._run = Run.create_empty(run_id=RUN_ID)

    def __enter__(self) -> Self:
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, RUN_ID, SUPERLINK_NODE_ID
        return self

    def __exit__(self, *_exc) -> None:
        TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def _deliver(self, message: Message) -> Message:
        delivered = Message(
            copy.deepcopy(message.content), message.metadata.dst_node_id, message.metadata.message_type
        )
        delivered.metadata.__dict__["_message_id"] = message.metadata.message_id
        try:
            reply = copy.deepcopy(self._call(delivered, self.contexts[message.metadata.dst_node_id]))
        except Exception as err:  # noqa: BLE001 - a crashing site answers with an error
            reason = f"{type(err)}:<'{err}'>"
            reply = Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=delivered
            )
        self.received.append(reply)
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            self._replies[message.metadata.message_id] = self._deliver(message)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run_config_for(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """The flat run config ``lhsfed-train OVERRIDES`` would send, writing into ``run_dir``."""
    from federation.coordinator.flwr_app_config import compose_config

    plain = compose_config(overrides)
    plain["output_dir"] = str(run_dir)
    return flatten_config(plain)


def run_in_process(
    run_config: dict[str, Any],
    *,
    run_dir: Path,
    num_nodes: int,
    mods: Iterable = (),
    client_app: str | None = None,
) -> dict[str, Any]:
    """One federation, every site in this process; returns the summary.

    ``client_app`` ("module:attr") is the ClientApp every site runs (None: the hospital's),
    ``mods`` wrap it.
    """
    from server.tasks import run_task  # imported late, as in simulation

    torch.set_num_threads(1)  # as each simulated client gets one CPU in Ray
    settings = RunSettings.from_run_config(dict(run_config))
    # Messages take their run and sender from the process's task identity, as a ServerApp's do.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, RUN_ID, SUPERLINK_NODE_ID
    grid = InProcessGrid(load_app(client_app or CLIENT_APP), run_config, num_nodes, mods)
    return run_task(grid, settings, default_dir=Path(run_dir))
