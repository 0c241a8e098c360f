"""Federated standardization: combine sites' (count, sum, sum of squares) into one scaling.

Sites send only these per-feature aggregates; the combined mean and standard deviation
equal what pooled data would give, without pooling any row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation import keys
from federation.errors import FederationError

log = logging.getLogger(__name__)


def combine_statistics(parts: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled mean and (population) standard deviation from per-site moments."""
    counts, sums, sumsqs = (np.sum(np.asarray(x, dtype="float64"), axis=0) for x in zip(*parts))
    safe = np.maximum(counts, 1.0)
    mean = sums / safe
    var = np.maximum(sumsqs / safe - mean**2, 0.0)
    return np.where(counts > 0, mean, 0.0), np.where(counts > 0, np.sqrt(var), 1.0)


def query_statistics(grid: Grid, node_ids: list[int], timeout: float
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Ask every node for its feature moments; returns mean, std and the sites that answered."""
    messages = [
        Message(RecordDict({keys.CONFIG: ConfigRecord({keys.QUERY_KIND: keys.QUERY_FEATURE_STATS})}),
                dst_node_id=node, message_type=MessageType.QUERY)
        for node in node_ids
    ]
    answers = list(grid.send_and_receive(messages, timeout=timeout))
    errors = sorted((r for r in answers if r.has_error()), key=lambda r: r.metadata.src_node_id)
    for r in errors:
        log.warning("site on node %s could not send feature statistics: %s", r.metadata.src_node_id, r.error.reason)
    # Sorted by site: the sums, hence the initial model, do not depend on arrival order.
    replies = sorted((r for r in answers if not r.has_error()),
                     key=lambda r: str(r.content[keys.SITE][keys.SITE_NAME]))
    if not replies:
        lines = errors[0].error.reason.strip().splitlines() if errors else ["no reply in time"]
        first = (lines or ["(no reason given)"])[-1][:500]
        raise FederationError(f"no site could send its feature statistics ({len(errors)} of "
                              f"{len(node_ids)} failed); the first reason: {first}")
    parts = [(m[keys.STATS_COUNT], m[keys.STATS_SUM], m[keys.STATS_SUMSQ])
             for m in (r.content[keys.METRICS] for r in replies)]
    mean, std = combine_statistics(parts)
    return mean, std, [str(r.content[keys.SITE][keys.SITE_NAME]) for r in replies]
