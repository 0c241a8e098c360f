"""Federated standardization: combine sites' (count, sum, sum of squares) into one scaling.

Sites send only these per-feature aggregates; the combined mean and standard deviation
equal what pooled data would give, without pooling any row. A site withholds a feature with a
cell under its minimum (count 0: ``client.releases``); a column no site released gets the
spec's prior instead (:func:`spec_prior`), so its raw values are not fed to the model unscaled.
The arithmetic is ``federation.core.feature_stats`` (the modeler's baselines use it too).
"""

from __future__ import annotations

import logging

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.core import wire
from federation.core.dataspec import DatasetSpec
from federation.core.errors import FederationError
from federation.core.feature_stats import Prior, combine_statistics

log = logging.getLogger(__name__)


def spec_prior(spec: DatasetSpec) -> Prior:
    """Mean and std for columns no site released, from the spec alone (no data).

    Numeric with a valid range: its midpoint and a quarter of its width (the range as ±2σ);
    indicators (binary, one-hot): 0.5 and 0.5, so 0/1 become -1/+1; otherwise 0 and 1.
    """
    mean, std = [], []
    for feat in spec.features:
        if feat.type == "numeric" and feat.min is not None and feat.max is not None:
            centre, scale = (feat.min + feat.max) / 2, (feat.max - feat.min) / 4
        elif feat.type in ("binary", "categorical"):
            centre, scale = 0.5, 0.5
        else:
            centre, scale = 0.0, 1.0
        mean += [centre] * len(feat.encoded_names())
        std += [scale if scale > 0 else 1.0] * len(feat.encoded_names())
    return np.array(mean), np.array(std)


def query_statistics(
    grid: Grid, node_ids: list[int], timeout: float, *, prior: Prior | None = None
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Ask every node for its feature moments; returns mean, std and the sites that answered
    (node id -> site name: later error replies carry no site name, the round record needs it).

    ``prior`` (:func:`spec_prior` of the run's dataset) fills columns no site released.
    """
    messages = [
        Message(
            RecordDict({wire.CONFIG: ConfigRecord({wire.QUERY_KIND: wire.QUERY_FEATURE_STATS})}),
            dst_node_id=node,
            message_type=MessageType.QUERY,
        )
        for node in node_ids
    ]
    answers = list(grid.send_and_receive(messages, timeout=timeout))
    errors = sorted((r for r in answers if r.has_error()), key=lambda r: r.metadata.src_node_id)
    for r in errors:
        log.warning(
            "site on node %s could not send feature statistics: %s", r.metadata.src_node_id, r.error.reason
        )
    # Sorted by site: the sums, hence the initial model, do not depend on arrival order.
    replies = sorted(
        (r for r in answers if not r.has_error()), key=lambda r: str(r.content[wire.SITE][wire.SITE_NAME])
    )
    if not replies:
        lines = errors[0].error.reason.strip().splitlines() if errors else ["no reply in time"]
        first = (lines or ["(no reason given)"])[-1][:500]
        raise FederationError(
            f"no site could send its feature statistics ({len(errors)} of "
            f"{len(node_ids)} failed); the first reason: {first}"
        )
    # A site under DP releases none (every statistic would be a release): its columns count 0.
    parts = [
        (m[wire.STATS_COUNT], m[wire.STATS_SUM], m[wire.STATS_SUMSQ])
        for m in (r.content[wire.METRICS] for r in replies)
        if wire.STATS_COUNT in m
    ] or [(np.zeros(len(prior[0])),) * 3 if prior is not None else ([0.0], [0.0], [0.0])]
    mean, std = combine_statistics(parts, prior=prior)
    unreleased = int((np.sum([p[0] for p in parts], axis=0) == 0).sum())
    if unreleased:
        log.info("%s feature columns released by no site: scaled by the spec's prior", unreleased)
    return (
        mean,
        std,
        {int(r.metadata.src_node_id): str(r.content[wire.SITE][wire.SITE_NAME]) for r in replies},
    )
