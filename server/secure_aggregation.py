"""Server side of secure aggregation (SecAgg+): the only server code on Flower's legacy layout.

Flower 1.41 runs SecAgg+ only as ``SecAggPlusWorkflow`` over a ``LegacyContext`` (legacy
strategy, client manager, ``parameters`` record). One training round here is:

1. ask every site whether its ε cap allows the round (``query.budget``): refusals are
   recorded as failures and those sites are left out;
2. run SecAgg+ among the willing sites. Each site sends its update (local − global weights)
   weighted by its example share, clipped to ±``CLIPPING_RANGE``, quantized to
   ``QUANTIZATION_RANGE`` levels and masked; the server can only unmask the *sum*;
3. new global weights = global + the FedAvg-weighted mean update.

Quantization error: each site's value is stochastically rounded to a step of 2c/Q, so the
mean update differs from plain FedAvg's by at most ``tolerance(k) = k·2c/Q`` per weight for
k sites (c = 8, Q = 2^22: 3.8e-6 per site). Every reply the server received is summarised
per stage in the round record, so anyone can check that no plaintext array arrived.
Masks are drawn from ``federation/core/secagg_masks.py`` (installed at import, as on the client
side), not from Flower's 32-bit ``pseudo_rand_gen``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common.recorddict_compat import (
    arrayrecord_to_parameters,
    parameters_to_arrayrecord,
)
from flwr.server import SimpleClientManager
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from federation.core import secagg_masks, wire
from federation.core.settings import RunSettings

log = logging.getLogger(__name__)
secagg_masks.install()  # Flower's 32-bit mask PRG -> ChaCha20 over the whole key (both sides)

CLIPPING_RANGE = 8.0  # |n_i/N · update| must stay below this (clients refuse otherwise)
QUANTIZATION_RANGE = 2**22
MODULUS_RANGE = 2**32
RECONSTRUCTION_THRESHOLD = 0.66  # share of a site's neighbours needed to unmask it
MIN_SITES = 2


def tolerance(num_sites: int) -> float:
    """Largest per-weight gap between the SecAgg+ and the plain FedAvg mean update."""
    return num_sites * 2 * CLIPPING_RANGE / QUANTIZATION_RANGE


class WitnessGrid:
    """The grid as the workflow sees it, keeping every reply so the round can report them."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.replies: list[tuple[str, Message]] = []

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        stage = str(messages[0].content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]) if messages else ""
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self.replies.extend((stage, r) for r in replies)
        return replies

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


def received_summary(replies: list[tuple[str, Message]]) -> dict[str, dict[str, int]]:
    """Per protocol stage: replies, bytes of plaintext arrays, bytes of masked vectors."""
    summary: dict[str, dict[str, int]] = {}
    for stage, reply in replies:
        row = summary.setdefault(
            stage, {"replies": 0, "errors": 0, "plaintext_array_bytes": 0, "masked_vector_bytes": 0}
        )
        row["replies"] += 1
        if reply.has_error():
            row["errors"] += 1
            continue
        row["plaintext_array_bytes"] += sum(
            len(a.data) for rec in reply.content.array_records.values() for a in rec.values()
        )
        masked = reply.content.config_records[RECORD_KEY_CONFIGS].get(Key.MASKED_PARAMETERS, [])
        row["masked_vector_bytes"] += sum(len(b) for b in masked)
    return summary


def screen_budgets(
    grid: Grid, nodes: list[int], server_round: int, timeout: float
) -> tuple[dict[int, int], list[Message]]:
    """Sites whose own ε cap allows this round (node -> examples), and the others' refusals."""
    query = f"{MessageType.QUERY}.{wire.QUERY_BUDGET}"
    messages = [
        Message(
            RecordDict({wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: server_round})}),
            dst_node_id=node,
            message_type=query,
        )
        for node in nodes
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    return (
        {
            r.metadata.src_node_id: int(r.content[wire.METRICS][wire.NUM_EXAMPLES])
            for r in replies
            if not r.has_error()
        },
        [r for r in replies if r.has_error()],
    )


def _fit_config(settings: RunSettings, server_round: int, names: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {wire.SERVER_ROUND: server_round, wire.ARRAY_NAMES: ",".join(names)}
    if settings.strategy.name == "fedprox":
        config[wire.PROXIMAL_MU] = float(settings.strategy.params.get("proximal_mu", 0.0))
    return config


def _legacy_context(
    grid: Grid, settings: RunSettings, server_round: int, nodes: list[int], arrays: ArrayRecord
) -> LegacyContext:
    names = list(arrays.keys())
    strategy = LegacyFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=len(nodes),
        min_available_clients=len(nodes),
        accept_failures=True,
        fit_metrics_aggregation_fn=lambda _: {},  # ours are per site
        on_fit_config_fn=lambda rnd: _fit_config(settings, rnd, names),
    )
    manager = SimpleClientManager()
    for node in nodes:
        manager.register(GridClientProxy(node, grid, grid.run.run_id))
    context = LegacyContext(
        Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        strategy=strategy,
        client_manager=manager,
    )
    context.state[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: server_round})
    parameters = ndarrays_to_parameters(arrays.to_numpy_ndarrays())
    context.state[MAIN_PARAMS_RECORD] = parameters_to_arrayrecord(parameters, keep_input=True)
    return context


def _apply_update(arrays: ArrayRecord, update: list[np.ndarray]) -> ArrayRecord:
    merged = {}
    for (name, weight), delta in zip(arrays.to_torch_state_dict().items(), update, strict=True):
        merged[name] = (weight.double() + torch.from_numpy(np.asarray(delta, dtype="float64"))).to(
            weight.dtype
        )
    return ArrayRecord(merged)


def secure_train_round(
    grid: Grid, settings: RunSettings, server_round: int, arrays: ArrayRecord, timeout: float
) -> tuple[ArrayRecord, list[Message], dict[str, Any]]:
    """One SecAgg+ training round: (new global arrays, train replies and refusals, witness)."""
    willing, refusals = screen_budgets(grid, sorted(grid.get_node_ids()), server_round, timeout)
    witness = WitnessGrid(grid)
    report: dict[str, Any] = {
        "sites": len(willing),
        "tolerance": tolerance(len(willing)),
        "clipping_range": CLIPPING_RANGE,
        "quantization_range": QUANTIZATION_RANGE,
    }
    if len(willing) < MIN_SITES:
        log.warning(
            "round %s: only %s site(s) may train; secure aggregation needs %s, round skipped",
            server_round,
            len(willing),
            MIN_SITES,
        )
        return arrays, refusals, report
    context = _legacy_context(witness, settings, server_round, sorted(willing), arrays)
    start = context.state[MAIN_PARAMS_RECORD]
    SecAggPlusWorkflow(
        num_shares=1.0,
        reconstruction_threshold=RECONSTRUCTION_THRESHOLD,
        max_weight=float(sum(willing.values())),  # weights n_i / N <= 1
        clipping_range=CLIPPING_RANGE,
        quantization_range=QUANTIZATION_RANGE,
        modulus_range=MODULUS_RANGE,
        timeout=timeout,
    )(witness, context)
    aggregated = context.state[MAIN_PARAMS_RECORD]
    if aggregated is not start:
        update = parameters_to_ndarrays(arrayrecord_to_parameters(aggregated, keep_input=True))
        arrays = _apply_update(arrays, update)
    else:
        log.warning("round %s: secure aggregation did not complete; global model unchanged", server_round)
    report["received"] = received_summary(witness.replies)
    trained = [r for _, r in witness.replies if r.has_error() or wire.METRICS in r.content]
    return arrays, refusals + trained, report
