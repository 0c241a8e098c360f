"""server.prompt_grid: the replies of a send_and_receive are collected as they arrive, through
the wrapped grid's own push/pull, and the wait ends at the timeout as Flower's does."""

from __future__ import annotations

from types import SimpleNamespace

from server.prompt_grid import PromptGrid


class ScriptedGrid:
    """A grid whose reply to message i is available from pull number ``ready[i]`` on."""

    def __init__(self, ready: list[int]) -> None:
        self.ready, self.pulls, self.pushed = ready, 0, []

    def push_messages(self, messages):
        self.pushed = list(messages)
        return [f"m{i}" for i in range(len(self.pushed))]

    def pull_messages(self, ids):
        self.pulls += 1
        return [
            SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=f"m{i}"))
            for i, at in enumerate(self.ready)
            if f"m{i}" in ids and at <= self.pulls
        ]

    def get_node_ids(self):
        return [1, 2]


def test_every_reply_is_returned_once_and_pulling_stops_when_all_are_in():
    grid = ScriptedGrid(ready=[1, 3, 2])
    replies = PromptGrid(grid).send_and_receive(["a", "b", "c"], timeout=60)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == ["m0", "m1", "m2"]
    assert grid.pulls == 3 and grid.pushed == ["a", "b", "c"]


def test_a_reply_that_never_comes_ends_the_wait_at_the_timeout_with_the_others():
    grid = ScriptedGrid(ready=[1, 10**9])
    replies = PromptGrid(grid).send_and_receive(["a", "b"], timeout=0.6)
    assert [r.metadata.reply_to_message_id for r in replies] == ["m0"]
    assert grid.pulls >= 2  # pulled again within the timeout, not once and given up


def test_everything_else_is_the_wrapped_grids():
    assert PromptGrid(ScriptedGrid([])).get_node_ids() == [1, 2]
