"""The grid as the ServerApp uses it: replies are collected as soon as they arrive.

Why: Flower's grid for a deployment (``flwr.superlink.grid.http_grid``) pulls the replies of a
``send_and_receive`` every 3 s, so every exchange of a round (feature statistics, budget
screen, train, evaluate, each SecAgg+ stage) waited up to 3 s more than the slowest site; a
round of a deployment waited several seconds for nothing. This grid pushes the same messages
and pulls the same replies through Flower's own ``push_messages`` / ``pull_messages``, every
:data:`PULL_INTERVAL_S`: one small request a quarter second per running ServerApp. The
simulation's in-memory grid already pulls every 0.1 s; it is wrapped too, so both runtimes
take one code path. Everything else is the wrapped grid's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

PULL_INTERVAL_S = 0.25


class PromptGrid:
    """``grid`` with a ``send_and_receive`` that pulls every :data:`PULL_INTERVAL_S`."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Push ``messages``, then pull their replies until all are in or ``timeout`` passes
        (None: wait for all), as Flower's ``Grid.send_and_receive`` promises."""
        waiting = set(self._grid.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            arrived = list(self._grid.pull_messages(waiting))
            replies += arrived
            waiting -= {m.metadata.reply_to_message_id for m in arrived}
            left = None if deadline is None else deadline - time.monotonic()
            if not waiting or (left is not None and left <= 0):
                break
            time.sleep(PULL_INTERVAL_S if left is None else min(PULL_INTERVAL_S, left))
        return replies

    def __getattr__(self, name: str):
        return getattr(self._grid, name)
