"""``summary.json``: the run's selected round, its test metrics, the privacy spent and which
sites trained (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from federation.core.records import Evaluation, RoundRecord
from federation.core.run_layout import METRICS, MODEL, SUMMARY
from federation.core.settings import RunSettings
from server.selection import chosen_round, select, should_stop
from server.unaggregated import unaggregated_summary

POOLED_KEYS = ("auroc", "auprc", "brier")
# from noisy releases only: the AUROC's error (noise and sampling), or why the noise left it undefined
DP_POOLED_KEYS = ("auroc_se", "auroc_ci", "auroc_undefined")
SITE_KEYS = ("auroc", "auprc", "brier", "n_test")


def aggregated_any(rounds: list[RoundRecord]) -> bool:
    """Whether some round changed the global model."""
    return any(r.changed_model for r in rounds)


def discarded_rounds(rounds: list[RoundRecord]) -> list[int]:
    return [r.round for r in rounds if r.discarded]


def _round(rounds: list[RoundRecord], server_round: int | None) -> RoundRecord | None:
    return next((r for r in rounds if r.round == server_round), None)


def site_totals(rounds: list[RoundRecord]) -> dict[str, float | None]:
    """Each site's lifetime ε (its ledger, every run it joined) as last reported in this run."""
    totals: dict[str, float | None] = {}
    for record in rounds:  # training, then (DP) the releases: each says the ledger right after it
        for part in (record.train, record.validation.sites, record.evaluate.sites):
            for site, metrics in part.items():
                if part is record.train or "site_epsilon" in metrics:
                    totals[site] = _later(totals.get(site, 0.0), metrics.get("site_epsilon"))
    return totals


def _later(known: float | None, reported: float | None) -> float | None:
    """The ledger's total only grows: the largest reported (None: DP off, unbounded) wins."""
    return None if known is None or reported is None else max(known, reported)


def failure_name(failure: dict[str, Any], sites: dict[int, str] | None = None) -> str:
    """A failing site's name: the one its record has, else the one learnt for its node, else
    ``node N`` (a node that never named its site)."""
    node = failure.get("node")
    return failure.get("site") or (sites or {}).get(int(node or 0)) or f"node {node}"


def participation(rounds: list[RoundRecord], roster: dict[int, str] | None = None) -> dict[str, Any]:
    """How many of the run's sites trained at least one round, and which never did.

    The run's sites: ``roster`` (node id -> site name, or ``node N`` for a node that never
    named its site: the nodes the run addressed), every site that trained and every one that
    failed a round (named from the roster when its record could not name it).
    """
    roster = roster or {}
    trained = {site for r in rounds for site in r.train}
    failed = {failure_name(f, roster) for r in rounds for f in r.failures}
    everyone = set(roster.values()) | trained | failed
    return {
        "sites": len(everyone),
        "sites_trained": len(trained),
        "sites_never_trained": sorted(everyone - trained),
    }


def validation_summary(pooled: dict[str, Any]) -> dict[str, Any]:
    """The pooled validation metrics as summary.json's ``selection.validation`` holds them: the
    count of validation rows as ``n_validation`` (the round record's shared key ``n_test``
    named a validation count ``n_test``: issue 28, T.9)."""
    out = {k: v for k, v in pooled.items() if k != "n_test"}
    if "n_test" in pooled:
        out["n_validation"] = pooled["n_test"]
    return out


def selection_summary(settings: RunSettings, rounds: list[RoundRecord]) -> dict[str, Any]:
    """The round handed out, chosen by the pooled validation metric, and whether patience
    ran out before ``rounds``; without any validation metric, the last round (``round`` of
    ``validation`` is then empty)."""
    metric = settings.selection.metric
    server_round = chosen_round(rounds, metric)
    record = _round(rounds, server_round)
    last = rounds[-1].round if rounds else 0
    return {
        "round": server_round,
        "metric": metric,
        "validation": validation_summary(record.validation.pooled) if record else {},
        "by_validation": select(rounds, metric).round is not None,
        "stopped_early": last < settings.rounds and should_stop(rounds, metric, settings.early_stopping),
        "rounds_planned": settings.rounds,
        "patience": settings.early_stopping.patience,
        "improvement": settings.early_stopping.improvement,
    }


def _privacy_sites(
    settings: RunSettings, epsilon_by_site: dict[str, float | None], totals: dict[str, float | None]
) -> dict[str, dict[str, float | None]]:
    """Per site: ε spent in this run, the run's planned ε, what stopping early left unspent."""
    planned = settings.privacy.target_epsilon if settings.privacy.enabled else None
    return {
        site: {
            "epsilon": eps,
            "site_epsilon": totals.get(site),
            "planned_epsilon": planned,
            "unspent_epsilon": (None if planned is None or eps is None else max(planned - eps, 0.0)),
        }
        for site, eps in sorted(epsilon_by_site.items())
    }


def build_summary(
    settings: RunSettings,
    rounds: list[RoundRecord],
    epsilon_by_site: dict[str, float],
    roster: dict[int, str] | None = None,
    word: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """Test evaluation of the selected round, the rounds that kept the global model, which of
    the run's sites (``roster``: :func:`participation`) trained, and each site's ε: the largest
    of this run (``epsilon``) and its lifetime total (``site_epsilon``), and the charges no
    aggregate used (:mod:`server.unaggregated`; ``word``: a resumed run's ledger answers)."""
    selection = selection_summary(settings, rounds)
    record = _round(rounds, selection["round"])
    evaluation = record.evaluate if record else Evaluation()
    return {
        "rounds": len(rounds),
        "discarded_rounds": discarded_rounds(rounds),
        **participation(rounds, roster),
        "strategy": settings.strategy.name,
        "model": settings.model.name,
        "selection": selection,
        "metrics": {
            "pooled": {k: evaluation.pooled.get(k) for k in POOLED_KEYS}
            | {k: evaluation.pooled[k] for k in DP_POOLED_KEYS if k in evaluation.pooled},
            "sites": {site: {k: m.get(k) for k in SITE_KEYS} for site, m in sorted(evaluation.sites.items())},
        },
        "privacy": {
            "enabled": settings.privacy.enabled,
            "delta": settings.privacy.delta,
            "sites": _privacy_sites(settings, epsilon_by_site, site_totals(rounds)),
            **unaggregated_summary(rounds, word),
        },
    }


def with_later_spend(summary: dict[str, Any], spent: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``summary`` with each site's ε raised to what a later step reported (personalize: its
    fine-tuning steps and its metrics' release, after summary.json was first written)."""
    sites = summary["privacy"]["sites"]
    for site, entry in spent.items():
        if site not in sites or entry.get("epsilon") is None:
            continue
        row = sites[site]
        row["epsilon"] = _later(row.get("epsilon", 0.0), entry["epsilon"])
        row["site_epsilon"] = _later(row.get("site_epsilon", 0.0), entry.get("site_epsilon"))
        planned = row.get("planned_epsilon")
        row["unspent_epsilon"] = (
            None if planned is None or row["epsilon"] is None else max(planned - row["epsilon"], 0.0)
        )
    return summary


def no_aggregation_reason(rounds: list[RoundRecord], run_dir: Path) -> str:
    """One line: why no round changed the global model, each site's first failure."""
    first: dict[str, str] = {}
    for failure in (f for r in rounds for f in r.failures):
        who = failure.get("site") or f"node {failure['node']}"
        first.setdefault(who, str(failure["reason"]).strip().splitlines()[-1][:300])
    why = "; ".join(f"{who}: {reason}" for who, reason in sorted(first.items()))
    reasons = [r.discard_reason for r in rounds if r.discard_reason]
    last = reasons[-1] if reasons else None
    return (
        f"no round aggregated an update ({len(rounds)} of {len(rounds)} discarded"
        + (f", {last}" if last else "")
        + ")"
        + (f"; {why}" if why else "")
        + f"; no {MODEL} was written, {METRICS} and {SUMMARY} are in {run_dir}"
    )
