"""A Flower Grid that delivers messages to ClientApps in this process (no Ray, no sockets).

Each node keeps its own Context across rounds, as a SuperNode does. Messages are deep-copied
both ways, like a wire, and every reply the server side receives is kept in ``received``.
Use as a context manager: it sets (and then clears) the task identity Flower stamps on
the messages the server side creates.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

RUN_ID, SERVER_NODE = 7, 1


class InProcessGrid:
    def __init__(self, app: ClientApp, node_configs: dict[int, dict], run_config: dict) -> None:
        self.app = app
        self.run = SimpleNamespace(run_id=RUN_ID)
        self.contexts = {node: Context(run_id=RUN_ID, node_id=node, node_config=dict(cfg),
                                       state=RecordDict(), run_config=dict(run_config))
                         for node, cfg in node_configs.items()}
        self.received: list[Message] = []

    def __enter__(self) -> "InProcessGrid":
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, SERVER_NODE, 0
        return self

    def __exit__(self, *_exc) -> None:
        TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = None

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def _deliver(self, message: Message) -> Message:
        wire = copy.deepcopy(message)
        wire.metadata.__dict__["_message_id"] = str(uuid4())
        wire.metadata.__dict__["_run_id"] = self.run.run_id
        reply = copy.deepcopy(self.app(wire, self.contexts[message.metadata.dst_node_id]))
        self.received.append(reply)
        return reply

    def send_and_receive(self, messages, timeout=None) -> list[Message]:
        return [self._deliver(m) for m in messages]
