"""server.exchange: a train message whose TTL (the round timeout) passed comes back as the
SuperLink's MESSAGE_UNAVAILABLE error; the round records it as a site that did not reply in
time, not as a site's error (the grid pulls often enough to see that error: server.prompt_grid)."""

from __future__ import annotations

from uuid import uuid4

from flwr.app import Error, Message, MessageType, RecordDict
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from server.exchange import exchange
from tests.helpers.replies import global_arrays, train_reply, trained


class OneShotGrid:
    """Answers node 11 with a site's reply and node 12 with the SuperLink's expiry error."""

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            if message.metadata.dst_node_id == 11:
                reply = train_reply("cleveland", 11, trained(global_arrays(), seed=1), n=50)
                reply.metadata.__dict__["_reply_to_message_id"] = message.metadata.message_id
            else:
                reply = Message(Error(code=ErrorCode.MESSAGE_UNAVAILABLE, reason="expired"), reply_to=message)
            replies.append(reply)
        return replies


def test_an_expired_message_is_a_site_that_did_not_reply_within_the_timeout():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    messages = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.TRAIN) for n in (11, 12)]
    sites = {12: "hungary"}
    result = exchange(OneShotGrid(), messages, timeout=30, stage="train", sites=sites)
    assert result.ok_nodes == {11} and len(result.replies) == 1
    (failure,) = result.failures
    assert failure["node"] == 12 and failure["site"] == "hungary" and failure["code"] is None
    assert failure["reason"] == "no reply within strategy.round_timeout (30s)"
