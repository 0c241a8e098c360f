"""One send-and-receive of the round loop, with the truth about who answered.

Flower's ``Grid.send_and_receive`` returns only the replies that arrived in time, and an
error the SuperLink writes for a dead node names the SuperLink (node 1) as its sender. The
round record needs each failure's real node and site (:class:`Exchange`), and evaluation
must not wait a second time for a node that let the round's timeout pass: the loop asks
only the nodes that trained to evaluate (a site scores only a round it trained).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import Message
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from server.round_records import failures, sites_by_node, unanswered


@dataclass
class Exchange:
    """The replies to one batch of messages, and what failed (with node and site)."""

    replies: list[Message]
    failures: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok_nodes(self) -> set[int]:
        """The nodes that answered with content (not an error)."""
        return {int(r.metadata.src_node_id) for r in self.replies if not r.has_error()}


def exchange(
    grid: Grid, messages: Iterable[Message], *, timeout: float, stage: str, sites: dict[int, str]
) -> Exchange:
    """Send ``messages``, collect the replies, learn node -> site names into ``sites``.

    Each message lives no longer than the wait for it (its TTL is ``timeout``; Flower's default
    is 12 hours): a site that reconnects after the server gave up on the round is not handed
    it, so it does not pay ε for an update nobody will read (server.unaggregated)."""
    messages = list(messages)
    for message in messages:
        message.metadata.ttl = min(float(message.metadata.ttl), float(timeout))
    replies = list(grid.send_and_receive(messages, timeout=timeout)) if messages else []
    # A message whose TTL (the timeout) passed unanswered comes back as the SuperLink's
    # MESSAGE_UNAVAILABLE error: that node did not reply in time, as one the wait outlasted.
    replies = [r for r in replies if not _expired(r)]
    sites.update(sites_by_node(replies))
    # The grid gives each message its id when it pushes it: map replies back to their node.
    to_node = {m.metadata.message_id: int(m.metadata.dst_node_id) for m in messages if m.metadata.message_id}
    answered = {to_node.get(r.metadata.reply_to_message_id, int(r.metadata.src_node_id)) for r in replies}
    missing = {int(m.metadata.dst_node_id) for m in messages} - answered
    found = failures(replies, stage=stage, nodes_by_message=to_node, sites=sites)
    found += unanswered(missing, stage=stage, timeout=timeout, sites=sites)
    return Exchange(replies, found)


def _expired(reply: Message) -> bool:
    return reply.has_error() and int(reply.error.code) == ErrorCode.MESSAGE_UNAVAILABLE


def only_nodes(messages: Iterable[Message], nodes: set[int]) -> list[Message]:
    """The messages addressed to ``nodes`` (e.g. those that trained the round)."""
    return [m for m in messages if int(m.metadata.dst_node_id) in nodes]
