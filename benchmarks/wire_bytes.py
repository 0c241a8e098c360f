"""(d) Bytes a hospital sends per round / the float32 model size.

The real ClientApp answers real train, evaluate and query messages for a UCI site; each reply
is serialized exactly as Flower puts it on the wire (``message_to_proto``) and measured.
"""

from __future__ import annotations

import numpy as np
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from flwr.common.serde import message_to_proto, recorddict_to_proto
from flwr.supercore.task_identity import TaskIdentity

from client.app import app as client_app
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config
from server.federation_loop import model_spec

MODELS = {
    "mlp hidden 32": ["model=mlp"],
    "mlp hidden 256": ["model=mlp", "model.hidden=256"],
    "logreg (default)": ["model=logreg"],
}


def _reply_bytes(run_config: dict, message_type: str, arrays: ArrayRecord | None) -> int:
    content = RecordDict(
        {wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1, wire.QUERY_KIND: wire.QUERY_FEATURE_STATS})}
    )
    if arrays is not None:
        content[wire.ARRAYS] = arrays
    message = Message(content, dst_node_id=7, message_type=message_type)
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "lhsfed-mode": "simulation"},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    reply = client_app(message, context)
    assert not reply.has_error(), reply.error
    return len(message_to_proto(reply).SerializeToString())


def measure(overrides: list[str]) -> dict[str, float]:
    run_config = flatten_config(compose_config(["rounds=2", *overrides]))
    settings = RunSettings.from_run_config(run_config)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())
    model_bytes = 4 * sum(int(np.prod(a.shape)) for a in arrays.to_numpy_ndarrays())
    train = _reply_bytes(run_config, MessageType.TRAIN, arrays)
    evaluate = _reply_bytes(run_config, MessageType.EVALUATE, arrays)
    query = _reply_bytes(run_config, MessageType.QUERY, None)
    arrays_only = len(recorddict_to_proto(RecordDict({wire.ARRAYS: arrays})).SerializeToString())
    return {
        "model_bytes": model_bytes,
        "arrays_only": arrays_only,
        "train_reply": train,
        "evaluate_reply": evaluate,
        "query_reply_once": query,
        "train_ratio": train / model_bytes,
        "round_ratio": (train + evaluate) / model_bytes,
    }


def run() -> dict:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0  # as the server
    try:
        return {name: measure(overrides) for name, overrides in MODELS.items()}
    finally:
        TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None
