"""Client side of secure aggregation (SecAgg+): the only client code on Flower's legacy layout.

Flower 1.41's ``secaggplus_mod`` speaks the legacy ``fitins.*`` / ``fitres.*`` record layout.
This mod lets SecAgg+ train messages through it and adapts them to our ``train`` handler:
the global weights go in as our ``arrays`` record, and what comes back to the mod is the
site's *update* (local − global weights) for masking. The plaintext update and weights never
leave: the mod replaces them by a masked integer vector; only the scalar metrics and the
site name travel in the clear. Plain (non-SecAgg) messages pass straight through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE
from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins

from federation import keys
from federation.errors import PrivacyBudgetError

log = logging.getLogger(__name__)


def is_secure_aggregation(message: Message) -> bool:
    return RECORD_KEY_CONFIGS in message.content.config_records


def _to_our_layout(message: Message) -> dict[str, np.ndarray]:
    """Rewrite legacy fit instructions in place as our layout; returns the global weights."""
    fitins = recorddict_to_fitins(message.content, keep_input=True)
    config = dict(fitins.config)
    names = str(config.pop(keys.ARRAY_NAMES)).split(",")
    global_weights = dict(zip(names, parameters_to_ndarrays(fitins.parameters), strict=True))
    state_dict = {name: torch.from_numpy(array) for name, array in global_weights.items()}
    message.content = RecordDict({keys.ARRAYS: ArrayRecord(state_dict),
                                  keys.CONFIG: ConfigRecord(config)})
    return global_weights


def _check_range(update: list[np.ndarray], num_examples: int, context: Context) -> None:
    """Refuse to send an update SecAgg+ would clip silently (it clips before quantizing)."""
    state = context.state.config_records.get(RECORD_KEY_STATE, ConfigRecord())
    clip, max_weight = float(state.get("clipping_range", 0)), float(state.get("max_weight", 0))
    largest = max(float(np.abs(u).max()) for u in update) * num_examples / max(max_weight, 1.0)
    if clip and largest > clip:
        raise ValueError(f"weighted update reaches {largest:.3g} > SecAgg+ clipping range "
                         f"{clip:g}: raise server/secure_aggregation.py CLIPPING_RANGE")


def _legacy_reply(request: Message, reply: Message, global_weights: dict[str, np.ndarray],
                  context: Context) -> Message:
    """Our train reply -> legacy fit result carrying the update, plus our metrics and site."""
    if reply.has_error():
        raise PrivacyBudgetError(reply.error.reason)  # SecAgg+ drops this site from the round
    local = reply.content[keys.ARRAYS].to_numpy_ndarrays()
    update = [np.asarray(w, dtype="float64") - np.asarray(g, dtype="float64")
              for w, g in zip(local, global_weights.values(), strict=True)]
    num_examples = int(reply.content[keys.METRICS][keys.NUM_EXAMPLES])
    _check_range(update, num_examples, context)
    fitres = FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(update),
                    num_examples=num_examples, metrics={})
    content = fitres_to_recorddict(fitres, keep_input=False)
    content[keys.METRICS] = reply.content[keys.METRICS]
    content[keys.SITE] = reply.content[keys.SITE]
    return Message(content, reply_to=request)


@contextmanager
def _quiet_flower() -> Iterator[None]:
    """The SecAgg+ mod logs each stage at DEBUG; keep the console to one line per round."""
    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING

    logger = logging.getLogger("flwr")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def secure_aggregation_mod(message: Message, context: Context, call_next) -> Message:
    """Route SecAgg+ stages through Flower's mod; plain train messages go straight on."""
    if not is_secure_aggregation(message):
        return call_next(message, context)

    def train_on_our_layout(legacy: Message, ctx: Context) -> Message:
        global_weights = _to_our_layout(legacy)
        return _legacy_reply(legacy, call_next(legacy, ctx), global_weights, ctx)

    with _quiet_flower():
        return secaggplus_mod(message, context, train_on_our_layout)
