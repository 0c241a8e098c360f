"""``run.task=drift``: ask every site how far its current data is from its reference of a run.

The coordinator names the champion's run (its identity, as the sites know it) and nothing
else: each site compares against the reference it took itself when it trained in that run
(client/drift_reference.py) and returns per-feature SMD, missing-rate change and PSI only.
Here those scores are flagged against the thresholds and written to ``drift.json``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from federation.core import wire
from federation.core.atomic import write_json
from federation.core.errors import ConfigError
from federation.core.settings import RunSettings
from server.exchange import exchange
from server.federation_loop import nodes_to_wait_for, wait_for_nodes

log = logging.getLogger(__name__)
DRIFT_JSON = "drift.json"
DRIFT_MESSAGE = f"query.{wire.QUERY_DRIFT}"
DEFAULT_THRESHOLDS = {"smd": 0.2, "psi": 0.25, "missing": 0.10}


def drift_arguments(task_args: str) -> dict[str, Any]:
    """run.task_args of a drift run: {"task", "run_identity", "champion_version", "thresholds"}."""
    try:
        args = json.loads(task_args or "{}")
    except json.JSONDecodeError as err:
        raise ConfigError(f"run.task_args is not JSON ({err.msg}); lhsfed drift writes it") from None
    if not isinstance(args, dict) or not str(args.get("run_identity") or ""):
        raise ConfigError("run.task_args of a drift run needs run_identity (the champion's run folder)")
    thresholds = DEFAULT_THRESHOLDS | dict(args.get("thresholds") or {})
    for key, value in thresholds.items():
        if key not in DEFAULT_THRESHOLDS or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"drift threshold {key}={value!r}: give smd, psi, missing as numbers >= 0")
        if value < 0:
            raise ConfigError(f"drift threshold {key}={value!r} must be >= 0")
    return {
        "task": str(args.get("task") or ""),
        "run_identity": str(args["run_identity"]),
        "champion_version": args.get("champion_version"),
        "thresholds": {k: float(v) for k, v in thresholds.items()},
    }


def flag_feature(smd: float, psi: float, missing_change: float, thresholds: dict[str, float]) -> bool:
    """``|smd| > smd`` or ``psi > psi`` or ``|missing change| > missing``."""
    return (
        abs(smd) > thresholds["smd"] or psi > thresholds["psi"] or abs(missing_change) > thresholds["missing"]
    )


def site_drift(metrics, features: list[str], thresholds: dict[str, float]) -> dict[str, Any]:
    """One site's reply as drift.json's entry: per feature scores and flag, and the site flag."""
    smd, psi = metrics[wire.DRIFT_SMD], metrics[wire.DRIFT_PSI]
    missing, withheld = metrics[wire.DRIFT_MISSING_CHANGE], metrics[wire.DRIFT_WITHHELD]
    if not all(len(v) == len(features) for v in (smd, psi, missing, withheld)):
        raise ValueError("drift reply lists do not match the spec's features")
    out = {}
    for i, name in enumerate(features):
        if withheld[i]:
            out[name] = {"smd": None, "missing_change": None, "psi": None, "flagged": False, "withheld": True}
            continue
        flagged = flag_feature(smd[i], psi[i], missing[i], thresholds)
        out[name] = {"smd": smd[i], "missing_change": missing[i], "psi": psi[i], "flagged": flagged}
    return {"features": out, "flagged": any(f["flagged"] for f in out.values())}


def drift_record(replies, failures, features, args, run_folder: Path) -> dict[str, Any]:
    """drift.json (keys per the M2 contract) from the replies and the failures."""
    sites, refused = {}, {}
    for reply in replies:
        site = str(reply.content[wire.SITE][wire.SITE_NAME])
        try:
            sites[site] = site_drift(reply.content[wire.METRICS], features, args["thresholds"])
        except (KeyError, ValueError):
            refused[site] = "malformed drift reply"
    for failure in failures:
        refused[str(failure["site"] or f"node {failure['node']}")] = str(failure["reason"])
    return {
        "task": args["task"],
        "champion": {"version": args["champion_version"], "run_identity": args["run_identity"]},
        "thresholds": args["thresholds"],
        "sites": dict(sorted(sites.items())),
        "refused": dict(sorted(refused.items())),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_folder": str(run_folder),
    }


def run_drift(grid: Grid, settings: RunSettings, default_dir: Path) -> dict[str, Any]:
    """One drift query per connected site; writes drift.json in the run folder and returns it."""
    args = drift_arguments(settings.task_args)
    folder = Path(settings.output_dir) if settings.output_dir else default_dir
    timeout = float(settings.strategy.params.get("round_timeout", 600))
    nodes = wait_for_nodes(grid, nodes_to_wait_for(settings), timeout)
    messages = [
        Message(
            RecordDict({wire.CONFIG: ConfigRecord({wire.DRIFT_RUN: args["run_identity"]})}),
            dst_node_id=node,
            message_type=DRIFT_MESSAGE,
        )
        for node in nodes
    ]
    result = exchange(grid, messages, timeout=timeout, stage="drift", sites={})
    replies = [r for r in result.replies if not r.has_error()]
    features = [f.name for f in settings.data.features]
    record = drift_record(replies, result.failures, features, args, folder)
    write_json(folder / DRIFT_JSON, record)
    log.info("drift: %s site(s) answered, %s refused", len(record["sites"]), len(record["refused"]))
    return record
