"""``run.task=compare``: one compare query to every site, then ``comparison.json``.

The coordinator sends both models' arrays and the identity of each one's training run
(``settings.task_args``, written by :mod:`federation.coordinator.comparison`); each site
answers with aggregates only, or refuses (:mod:`client.comparison`). Pooling is the same as
for evaluation: each model's AUROC from the sites' summed score histograms. The document's
keys are the contract ``lhsfed promote`` reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.core import atomic, wire
from federation.core.comparison_measures import compared_measures
from federation.core.decision_curve import net_benefit, quantile_calibration_from_histograms
from federation.core.errors import ConfigError
from federation.core.histogram_metrics import class_total_noise_std, split_outweighs_noise
from federation.core.metrics import pooled_from_histograms
from federation.core.run_layout import json_safe
from federation.core.settings import RunSettings
from federation.core.weights_text import decode_state_dict
from server.exchange import exchange
from server.federation_loop import nodes_to_wait_for, wait_for_nodes
from server.round_records import site_of
from server.run_folder import refuse_outside_runs_root

log = logging.getLogger(__name__)
COMPARISON = "comparison.json"
ROLES = ("champion", "challenger")
MODEL_FIELDS = ("auroc", "calibration_slope", "calibration_intercept", "ece")
_WIRE = {
    "auroc": wire.AUROC,
    "calibration_slope": wire.CALIBRATION_SLOPE,
    "calibration_intercept": wire.CALIBRATION_INTERCEPT,
    "ece": wire.ECE,
}
_PREFIX = {"champion": wire.CHAMPION_PREFIX, "challenger": wire.CHALLENGER_PREFIX}


@dataclass(frozen=True)
class Candidate:
    """One model of the comparison, as ``task_args`` names it."""

    weights: str  # federation.core.weights_text text
    run_identity: str  # the name its training run's sites know it by
    model_spec: dict[str, Any]
    source: str
    version: str | None


DEFAULT_THRESHOLD = 0.5  # net benefit's risk threshold when lhsfed compare is given none


def comparison_threshold(task_args: str) -> float:
    """The risk threshold net benefit is compared at (``threshold`` of ``run.task_args``)."""
    try:
        threshold = float(json.loads(task_args).get("threshold", DEFAULT_THRESHOLD))
    except (ValueError, TypeError, AttributeError):
        threshold = float("nan")
    if not 0 < threshold < 1:
        raise ConfigError(f"run.task_args: threshold must be a risk in (0, 1), not {threshold}")
    return threshold


def comparison_args(task_args: str) -> tuple[str, dict[str, Candidate]]:
    """(task, role -> Candidate) of ``run.task_args``; one ConfigError line if malformed."""
    try:
        document = json.loads(task_args)
        candidates = {
            role: Candidate(
                weights=str(document[role]["weights"]),
                run_identity=str(document[role]["run_identity"]),
                model_spec=dict(document[role]["model_spec"]),
                source=str(document[role]["source"]),
                version=None if document[role].get("version") is None else str(document[role]["version"]),
            )
            for role in ROLES
        }
        return str(document["task"]), candidates
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"run.task_args: not the arguments of a comparison ({type(err).__name__}: {err}); "
            "launch it through lhsfed compare"
        ) from None


def compare_content(candidates: dict[str, Candidate]) -> RecordDict:
    """The query one site receives: both models' arrays, their run identities and model specs."""
    return RecordDict(
        {
            wire.CHAMPION_ARRAYS: ArrayRecord(decode_state_dict(candidates["champion"].weights)),
            wire.CHALLENGER_ARRAYS: ArrayRecord(decode_state_dict(candidates["challenger"].weights)),
            wire.CONFIG: ConfigRecord(
                {
                    wire.CHAMPION_RUN: candidates["champion"].run_identity,
                    wire.CHALLENGER_RUN: candidates["challenger"].run_identity,
                    wire.CHAMPION_MODEL_SPEC: json.dumps(candidates["champion"].model_spec),
                    wire.CHALLENGER_MODEL_SPEC: json.dumps(candidates["challenger"].model_spec),
                }
            ),
        }
    )


def site_comparison(metrics) -> dict[str, Any]:
    """One site's reply as its ``comparison.json`` entry. A DP reply whose test split is small
    against its noise (federation.core.histogram_metrics.split_outweighs_noise) keeps its
    figures but no intervals, and says why: the noise, not the models, would decide them (a
    37-row site's AUROC difference CI came out [-1.24, -0.58] and blocked a promotion)."""
    entry: dict[str, Any] = {"n_test": int(metrics[wire.N_TEST])}
    for role in ROLES:
        entry[role] = {name: float(metrics[_PREFIX[role] + key]) for name, key in _WIRE.items()}
    entry["auroc_difference"] = float(metrics[wire.AUROC_DIFFERENCE])
    entry["difference_ci"] = [float(metrics[wire.DIFFERENCE_CI_LOW]), float(metrics[wire.DIFFERENCE_CI_HIGH])]
    noise = float(metrics.get(wire.RELEASE_NOISE_STD, 0.0))
    if noise > 0 and not split_outweighs_noise(entry["n_test"], [noise]):
        entry["difference_ci"] = [float("nan"), float("nan")]
        entry["too_noisy"] = (
            f"{entry['n_test']} test rows against a noise std of {class_total_noise_std([noise]):.0f} "
            "on each class total"
        )
    return entry


def _site_entry(reply: Message, threshold: float) -> dict[str, Any]:
    """A site's comparison.json entry with its other measures (no intervals if too noisy)."""
    entry = site_comparison(reply.content[wire.METRICS])
    measures = site_measures(reply, threshold)
    if "too_noisy" in entry:
        measures = {k: v | {"difference_ci": [float("nan"), float("nan")]} for k, v in measures.items()}
    return entry | {"measures": measures}


def pooled_histograms(replies: list[Message], role: str) -> tuple[np.ndarray, np.ndarray]:
    """One model's class histograms summed over the sites that answered."""
    metrics = [r.content[wire.METRICS] for r in replies]
    pos = np.sum([m[_PREFIX[role] + wire.SCORE_HIST_POS] for m in metrics], axis=0)
    neg = np.sum([m[_PREFIX[role] + wire.SCORE_HIST_NEG] for m in metrics], axis=0)
    return pos, neg


def noise_stds(replies: list[Message]) -> list[float]:
    """Each reply's release noise std (0: an exact reply, DP off)."""
    return [float(r.content[wire.METRICS].get(wire.RELEASE_NOISE_STD, 0.0)) for r in replies]


def site_measures(reply: Message, threshold: float) -> dict[str, dict]:
    """One site's ECE and net benefit of both models, their differences and 95 % intervals,
    from its released histograms (its AUROC difference and CI are the site's own)."""
    found = compared_measures(
        *(pooled_histograms([reply], role) for role in ROLES),
        noise_stds=noise_stds([reply]),
        threshold=threshold,
    )
    return {name: found[name] for name in ("ece", "net_benefit")}


def pooled_comparison(replies: list[Message], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Each model's pooled AUROC from the summed histograms, their difference and its 95 %
    interval (DP noise included), and the rule's other measures (ECE, net benefit at
    ``threshold``) with theirs (federation.core.comparison_measures)."""
    if not replies:
        return {
            "champion_auroc": None,
            "challenger_auroc": None,
            "auroc_difference": None,
            "auroc_difference_ci": None,
            "threshold": threshold,
            "measures": {},
        }
    summed = [pooled_histograms(replies, role) for role in ROLES]
    pooled: dict[str, Any] = {
        f"{role}_auroc": pooled_from_histograms(*hists)["auroc"] for role, hists in zip(ROLES, summed)
    }
    pooled["auroc_difference"] = pooled["challenger_auroc"] - pooled["champion_auroc"]
    measures = compared_measures(*summed, noise_stds=noise_stds(replies), threshold=threshold)
    pooled["auroc_difference_ci"] = measures["auroc"]["difference_ci"]
    pooled["threshold"] = threshold
    pooled["measures"] = measures
    return pooled


def pooled_curves(replies: list[Message]) -> dict[str, Any]:
    """Both models' pooled decision curves (net benefit on the 1/100 grid) and equal-count
    calibration, from the same summed histograms: no patient score is needed."""
    if not replies:
        return {}
    found = {role: pooled_histograms(replies, role) for role in ROLES}
    return {
        "decision_curves": {role: net_benefit(*found[role]) for role in ROLES},
        "calibration": {role: quantile_calibration_from_histograms(*found[role]) for role in ROLES},
    }


def comparison_document(
    task: str,
    candidates: dict[str, Candidate],
    replies: list[Message],
    failed: list[dict],
    folder: Path,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """``comparison.json``: the contract's keys; a refused site under its name (else its node)."""
    ok = sorted((r for r in replies if not r.has_error()), key=site_of)  # sums in a fixed order
    return json_safe(
        {
            "task": task,
            **{role: {"version": c.version, "source": c.source} for role, c in candidates.items()},
            "sites": {site_of(r): _site_entry(r, threshold) for r in ok},
            "refused": {str(f["site"] or f"node {f['node']}"): str(f["reason"]) for f in failed},
            "pooled": pooled_comparison(ok, threshold),
            "pooled_curves": pooled_curves(ok),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_folder": str(folder),
        }
    )


def run_comparison(grid: Grid, settings: RunSettings, default_dir: Path) -> dict[str, Any]:
    """Ask every site to compare the two models; write and return ``comparison.json``."""
    folder = refuse_outside_runs_root(Path(settings.output_dir) if settings.output_dir else default_dir)
    task, candidates = comparison_args(settings.task_args)
    threshold = comparison_threshold(settings.task_args)
    timeout = float(settings.strategy.params.get("round_timeout", 600))
    nodes = wait_for_nodes(grid, nodes_to_wait_for(settings), timeout)
    kind = f"{MessageType.QUERY}.{wire.QUERY_COMPARE}"
    messages = [Message(compare_content(candidates), dst_node_id=node, message_type=kind) for node in nodes]
    result = exchange(grid, messages, timeout=timeout, stage="compare", sites={})
    for failure in result.failures:
        log.warning("compare: node %s refused: %s", failure["node"], failure["reason"])
    document = comparison_document(task, candidates, result.replies, result.failures, folder, threshold)
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / COMPARISON, document)
    return document
