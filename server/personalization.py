"""After the federation: ask every site that trained to personalize the selected model.

One ``query.personalize`` message per site carries the selected round's global model; each
site adapts it (:mod:`client.personalize`), keeps it, and answers with test-split metrics of
the global and of its personalized model. ``personalization.json`` in the run folder holds,
per site, both with their AUROC CIs and a ``worse`` flag (:func:`is_worse`); the report shows
them (federation.modeler.report.personalization_table).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.core import atomic, wire
from federation.core.records import RoundRecord
from federation.core.run_layout import PERSONALIZATION, json_safe
from federation.core.settings import RunSettings
from server.exchange import exchange

log = logging.getLogger(__name__)
# Personalization is "worse" at a site when its test AUROC CI lies entirely below the global
# model's, or its point estimate is lower by more than this (small test splits have wide CIs
# that rarely separate; a drop of 0.01 AUROC is already one a clinical team would notice).
WORSE_MARGIN = 0.01
WORSE_RULE = (
    "worse: personalized AUROC CI entirely below the global one, or personalized AUROC lower "
    f"by more than {WORSE_MARGIN}"
)


def _model_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    get = lambda key: metrics.get(prefix + key)  # noqa: E731
    return {
        "auroc": get("auroc"),
        "auroc_ci": [get("auroc-ci-low"), get("auroc-ci-high")],
        "calibration_slope": get("calibration-slope"),
        "calibration_intercept": get("calibration-intercept"),
        "brier": get("brier"),
    }


def is_worse(global_: dict[str, Any], personalized: dict[str, Any]) -> bool:
    """:data:`WORSE_RULE` (False where an AUROC is undefined)."""
    g, p = global_["auroc"], personalized["auroc"]
    if g is None or p is None or math.isnan(g) or math.isnan(p):
        return False
    high, low = personalized["auroc_ci"][1], global_["auroc_ci"][0]
    separated = high is not None and low is not None and high < low
    return bool(separated or p < g - WORSE_MARGIN)


def site_entry(metrics: dict[str, Any]) -> dict[str, Any]:
    """One site's reply as its personalization.json entry."""
    global_ = _model_metrics(metrics, wire.GLOBAL_PREFIX)
    personalized = _model_metrics(metrics, wire.PERSONALIZED_PREFIX)
    entry = {
        "n_test": int(metrics.get(wire.N_TEST, 0)),
        "global": global_,
        "personalized": personalized,
        "auroc_difference": (
            None
            if global_["auroc"] is None or personalized["auroc"] is None
            else personalized["auroc"] - global_["auroc"]
        ),
        "worse": is_worse(global_, personalized),
    }
    if wire.STEPS in metrics:  # finetune: what it cost the site
        entry["steps"] = int(metrics[wire.STEPS])
    if wire.EPSILON in metrics:  # the ledger after this reply (fine-tuning, the metrics' release)
        entry.update(epsilon=metrics.get(wire.EPSILON), site_epsilon=metrics.get(wire.SITE_EPSILON))
    return entry


def trained_nodes(records: list[RoundRecord], sites: dict[int, str], connected: list[int]) -> list[int]:
    """The nodes whose site trained some round (all connected ones if none is known by name:
    a site that did not train refuses anyway)."""
    trained = {site for record in records for site in record.train}
    known = sorted(node for node, site in sites.items() if site in trained)
    return known or sorted(connected)


def personalize_sites(
    grid: Grid,
    settings: RunSettings,
    run_dir: Path,
    arrays: ArrayRecord,
    *,
    selected_round: int | None,
    nodes: list[int],
    sites: dict[int, str],
    timeout: float,
) -> dict[str, Any]:
    """Send the selected model to ``nodes``; write and return personalization.json."""
    config = ConfigRecord(
        {wire.SERVER_ROUND: settings.rounds + 1, wire.PERSONALIZE_MODE: settings.personalize}
    )
    messages = [
        Message(
            RecordDict({wire.ARRAYS: arrays, wire.CONFIG: config}),
            dst_node_id=node,
            message_type=f"{MessageType.QUERY}.{wire.QUERY_PERSONALIZE}",
        )
        for node in nodes
    ]
    answers = exchange(grid, messages, timeout=timeout, stage="personalize", sites=sites)
    by_site = {
        str(r.content[wire.SITE][wire.SITE_NAME]): dict(r.content[wire.METRICS])
        for r in answers.replies
        if not r.has_error()
    }
    result = {
        "mode": settings.personalize,
        "selected_round": selected_round,
        "rule": WORSE_RULE,
        "sites": {site: site_entry(metrics) for site, metrics in sorted(by_site.items())},
        "refused": {str(f["site"] or f"node {f['node']}"): str(f["reason"]) for f in answers.failures},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result = json_safe(result)
    atomic.write_json(Path(run_dir) / PERSONALIZATION, result)
    for site, entry in result["sites"].items():
        log.info(
            "personalization at %s: AUROC %s -> %s",
            site,
            entry["global"]["auroc"],
            entry["personalized"]["auroc"],
        )
    return result
