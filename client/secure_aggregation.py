"""Client side of secure aggregation (SecAgg+): the only client code on Flower's legacy layout.

Flower 1.41's ``secaggplus_mod`` speaks the legacy ``fitins.*`` / ``fitres.*`` record layout.
This mod lets SecAgg+ train messages through it and adapts them to our ``train`` handler:
the global weights go in as our ``arrays`` record, and what comes back to the mod is the
site's *update* (local − global weights) for masking. The plaintext update and weights never
leave: the mod replaces them by a masked integer vector; only the scalar metrics and the
site name travel in the clear. Plain (non-SecAgg) messages pass straight through.

Two hardenings of Flower's mod (see docs/secure_aggregation.md): masks come from the
cryptographic generator in ``federation/core/secagg_masks.py`` (installed at import, on the server
side too), and an unmask request is checked before any secret share leaves (``unmask_refusal``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.client.mod.secure_aggregation.secaggplus_mod import SecAggPlusState
from flwr.common import (
    Code,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
    Key,
    Stage,
)
from flwr.compat.common.recorddict_compat import (
    fitres_to_recorddict,
    recorddict_to_fitins,
)

from federation.core import secagg_masks, wire
from federation.core.errors import PrivacyBudgetError

log = logging.getLogger(__name__)
secagg_masks.install()  # Flower's 32-bit mask PRG -> ChaCha20 over the whole key (both sides)

UNMASK_REFUSED = wire.UNMASK_REFUSED  # this site refused to release secret shares


def is_secure_aggregation(message: Message) -> bool:
    return RECORD_KEY_CONFIGS in message.content.config_records


def _to_our_layout(message: Message) -> dict[str, np.ndarray]:
    """Rewrite legacy fit instructions in place as our layout; returns the global weights."""
    fitins = recorddict_to_fitins(message.content, keep_input=True)
    config = dict(fitins.config)
    names = str(config.pop(wire.ARRAY_NAMES)).split(",")
    global_weights = dict(zip(names, parameters_to_ndarrays(fitins.parameters), strict=True))
    state_dict = {name: torch.from_numpy(array) for name, array in global_weights.items()}
    message.content = RecordDict({wire.ARRAYS: ArrayRecord(state_dict), wire.CONFIG: ConfigRecord(config)})
    return global_weights


def _check_range(update: list[np.ndarray], num_examples: int, context: Context) -> None:
    """Refuse to send an update SecAgg+ would clip silently (it clips before quantizing)."""
    state = context.state.config_records.get(RECORD_KEY_STATE, ConfigRecord())
    clip, max_weight = float(state.get("clipping_range", 0)), float(state.get("max_weight", 0))
    largest = max(float(np.abs(u).max()) for u in update) * num_examples / max(max_weight, 1.0)
    if clip and largest > clip:
        raise ValueError(
            f"weighted update reaches {largest:.3g} > SecAgg+ clipping range "
            f"{clip:g}: raise server/secure_aggregation.py CLIPPING_RANGE"
        )


def _legacy_reply(
    request: Message, reply: Message, global_weights: dict[str, np.ndarray], context: Context
) -> Message:
    """Our train reply -> legacy fit result carrying the update, plus our metrics and site."""
    if reply.has_error():
        raise PrivacyBudgetError(reply.error.reason)  # SecAgg+ drops this site from the round
    local = reply.content[wire.ARRAYS].to_numpy_ndarrays()
    update = [
        np.asarray(w, dtype="float64") - np.asarray(g, dtype="float64")
        for w, g in zip(local, global_weights.values(), strict=True)
    ]
    num_examples = int(reply.content[wire.METRICS][wire.NUM_EXAMPLES])
    _check_range(update, num_examples, context)
    fitres = FitRes(
        status=Status(code=Code.OK, message=""),
        parameters=ndarrays_to_parameters(update),
        num_examples=num_examples,
        metrics={},
    )
    content = fitres_to_recorddict(fitres, keep_input=False)
    content[wire.METRICS] = reply.content[wire.METRICS]
    content[wire.SITE] = reply.content[wire.SITE]
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


def unmask_refusal(own: int, committed: set[int], active: list[int], dead: list[int]) -> str | None:
    """Why this site must not answer an unmask request (None: it may).

    A node's shares are released once per node: its private-seed share if it is active, its
    key share if it is dead. Both for one node, or shares of a node outside the round, would
    let the server strip that node's masks and read its update (Flower's mod does not check).
    """
    both, unknown = set(active) & set(dead), (set(active) | set(dead)) - committed
    problems = [f"node(s) {sorted(both)} listed both active and dead"] if both else []
    problems += (
        [f"node(s) {sorted(unknown)} not among this round's share holders {sorted(committed)}"]
        if unknown
        else []
    )
    problems += [f"this node ({own}) listed as dead"] if own in dead else []
    if not problems:
        return None
    return (
        "SecAgg+ unmask refused, no secret share sent: " + "; ".join(problems) + ". The "
        "server must list each neighbour once, active or dead, from this round's nodes"
    )


def _refuse_unmask(message: Message, context: Context) -> Message | None:
    """An error reply (and a local warning) if the unmask request fails ``unmask_refusal``."""
    configs = message.content.config_records[RECORD_KEY_CONFIGS]
    if configs.get(Key.STAGE) != Stage.UNMASK:
        return None
    state = SecAggPlusState(**context.state.config_records.get(RECORD_KEY_STATE, {}))
    active, dead = configs.get(Key.ACTIVE_NODE_ID_LIST, []), configs.get(Key.DEAD_NODE_ID_LIST, [])
    if state.current_stage != Stage.COLLECT_MASKED_VECTORS:  # answered, aborted or never started
        reason = (
            f"SecAgg+ unmask refused, no secret share sent: this site is at stage "
            f"{state.current_stage!r}; it answers one unmask request per round, after "
            "sending its masked vector"
        )
    else:
        reason = unmask_refusal(state.nid, set(state.rd_seed_share_dict), list(active), list(dead))
    if reason is None:
        return None
    log.warning("round %s: %s", message.metadata.group_id, reason)
    context.state.config_records.pop(RECORD_KEY_STATE, None)  # round aborted: no later unmask
    return Message(Error(code=UNMASK_REFUSED, reason=reason), reply_to=message)


def secure_aggregation_mod(message: Message, context: Context, call_next) -> Message:
    """Route SecAgg+ stages through Flower's mod; plain train messages go straight on."""
    if not is_secure_aggregation(message):
        return call_next(message, context)
    refusal = _refuse_unmask(message, context)
    if refusal is not None:
        return refusal

    def train_on_our_layout(legacy: Message, ctx: Context) -> Message:
        global_weights = _to_our_layout(legacy)
        return _legacy_reply(legacy, call_next(legacy, ctx), global_weights, ctx)

    with _quiet_flower():
        return secaggplus_mod(message, context, train_on_our_layout)
