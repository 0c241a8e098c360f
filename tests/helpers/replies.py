"""Small builders of real Flower train replies (ArrayRecord + MetricRecord) for strategy tests."""

from __future__ import annotations

from uuid import uuid4

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

from federation.core import wire
from federation.core.model import ModelSpec, build_model


def global_arrays(seed: int = 0) -> ArrayRecord:
    """A real model's state dict (the MLP on the UCI heart features)."""
    return ArrayRecord(build_model(ModelSpec(name="mlp", n_features=20, hidden=8), seed=seed).state_dict())


def numpy_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def trained(reference: ArrayRecord, seed: int, scale: float = 0.01) -> dict[str, np.ndarray]:
    """A plausible local update: the global arrays plus small noise."""
    rng = np.random.default_rng(seed)
    return {
        k: (v + scale * rng.standard_normal(v.shape)).astype(v.dtype)
        for k, v in numpy_arrays(reference).items()
    }


def train_reply(site: str, node: int, arrays: dict[str, np.ndarray], n: int) -> Message:
    """The reply a site's ClientApp would send to a train message."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    instruction = Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    instruction.metadata.__dict__["_message_id"] = str(uuid4())
    content = RecordDict(
        {
            wire.ARRAYS: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            wire.METRICS: MetricRecord({wire.NUM_EXAMPLES: n, wire.TRAIN_LOSS: 0.5}),
            wire.SITE: ConfigRecord({wire.SITE_NAME: site}),
        }
    )
    return Message(content, reply_to=instruction)
