"""After the federation: ask every site that trained to personalize the selected model.

One ``query.personalize`` message per site carries the selected round's global model; each
site adapts it (:mod:`client.personalize`), keeps it, and answers with test-split metrics of
the global and of its personalized model. ``personalization.json`` in the run folder holds,
per site, both with their AUROC CIs and a ``worse`` flag with its reasons
(:func:`worse_reasons`); the report shows them (federation.modeler.report.personalization_table).
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
# Personalization is "worse" at a site when one of these measures of its test rows is worse by
# more than its margin (each a change a clinical team would notice; smaller ones are read as no
# change). One measure is not enough: recalibration cannot change the ranking, so AUROC alone
# never flagged a recalibration that spoiled calibration, and flagged binning noise instead.
AUROC_MARGIN = 0.01  # lower by more, or its CI entirely below the global one
BRIER_MARGIN = 0.005  # higher by more
SLOPE_MARGIN = 0.1  # calibration slope further from 1 by more
RANKING_MODES = ("finetune",)  # modes that can change the ranking (AUROC is judged only there)


def worse_rule(mode: str) -> str:
    """The rule of :func:`worse_reasons` for ``mode``, in words (personalization.json, report)."""
    auroc = (
        f"AUROC lower by more than {AUROC_MARGIN} or its CI entirely below the global one; "
        if mode in RANKING_MODES
        else "(AUROC not judged: recalibration keeps the ranking, its AUROC changes are binning) "
    )
    return (
        f"worse: {auroc}Brier higher by more than {BRIER_MARGIN}; calibration slope further "
        f"from 1 by more than {SLOPE_MARGIN}"
    )


def _defined(*values: Any) -> bool:
    return all(v is not None and not math.isnan(v) for v in values)


def _model_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    get = lambda key: metrics.get(prefix + key)  # noqa: E731
    return {
        "auroc": get("auroc"),
        "auroc_ci": [get("auroc-ci-low"), get("auroc-ci-high")],
        "calibration_slope": get("calibration-slope"),
        "calibration_intercept": get("calibration-intercept"),
        "brier": get("brier"),
    }


def worse_reasons(global_: dict[str, Any], personalized: dict[str, Any], mode: str) -> list[str]:
    """Each measure by which personalization is worse at a site (:func:`worse_rule`); a
    measure undefined on either model makes no claim."""
    reasons = []
    g, p = global_.get("auroc"), personalized.get("auroc")
    if mode in RANKING_MODES and _defined(g, p):
        high, low = personalized["auroc_ci"][1], global_["auroc_ci"][0]
        if _defined(high, low) and high < low:
            reasons.append(f"AUROC CI entirely below the global one ({g:.3f} → {p:.3f})")
        elif p < g - AUROC_MARGIN:
            reasons.append(f"AUROC {g:.3f} → {p:.3f}")
    g, p = global_.get("brier"), personalized.get("brier")
    if _defined(g, p) and p > g + BRIER_MARGIN:
        reasons.append(f"Brier {g:.3f} → {p:.3f}")
    g, p = global_.get("calibration_slope"), personalized.get("calibration_slope")
    if _defined(g, p) and abs(p - 1) > abs(g - 1) + SLOPE_MARGIN:
        reasons.append(f"calibration slope {g:.2f} → {p:.2f}")
    return reasons


def is_worse(global_: dict[str, Any], personalized: dict[str, Any], mode: str) -> bool:
    """Whether any measure is worse (:func:`worse_reasons`)."""
    return bool(worse_reasons(global_, personalized, mode))


def site_entry(metrics: dict[str, Any], mode: str) -> dict[str, Any]:
    """One site's reply as its personalization.json entry (``mode``: the run's personalize)."""
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
        "worse_reasons": worse_reasons(global_, personalized, mode),
    }
    entry["worse"] = bool(entry["worse_reasons"])
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
        "rule": worse_rule(settings.personalize),
        "sites": {
            site: site_entry(metrics, settings.personalize) for site, metrics in sorted(by_site.items())
        },
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
