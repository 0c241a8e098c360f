"""``summary.json``: the run's final metrics and privacy spent, in one fixed shape (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from federation.settings import RunSettings

POOLED_KEYS = ("auroc", "auprc", "brier")
SITE_KEYS = ("auroc", "auprc", "brier", "n_test")


def aggregated_any(rounds: list[dict[str, Any]]) -> bool:
    """Whether some round changed the global model (older records lack ``discarded``)."""
    return any(r.get("aggregated") and not r.get("discarded") for r in rounds)


def discarded_rounds(rounds: list[dict[str, Any]]) -> list[int]:
    return [r["round"] for r in rounds if r.get("discarded")]


def site_totals(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each site's lifetime ε (its ledger, every run it joined) as last reported in this run."""
    totals: dict[str, float | None] = {}
    for record in rounds:
        for site, metrics in record["train"].items():
            totals[site] = metrics.get("site_epsilon")
    return totals


def build_summary(settings: RunSettings, rounds: list[dict[str, Any]],
                  epsilon_by_site: dict[str, float]) -> dict[str, Any]:
    """Final evaluation of the last round, the rounds that kept the global model, and each
    site's ε: the largest of this run (``epsilon``) and its lifetime total (``site_epsilon``)."""
    evaluation = rounds[-1]["evaluate"] if rounds else {"pooled": {}, "sites": {}}
    totals = site_totals(rounds)
    return {
        "rounds": len(rounds),
        "discarded_rounds": discarded_rounds(rounds),
        "strategy": settings.strategy.name,
        "model": settings.model.name,
        "metrics": {
            "pooled": {k: evaluation["pooled"].get(k) for k in POOLED_KEYS},
            "sites": {site: {k: m.get(k) for k in SITE_KEYS}
                      for site, m in sorted(evaluation["sites"].items())},
        },
        "privacy": {
            "enabled": settings.privacy.enabled,
            "delta": settings.privacy.delta,
            "sites": {site: {"epsilon": eps, "site_epsilon": totals.get(site)}
                      for site, eps in sorted(epsilon_by_site.items())},
        },
    }


def no_aggregation_reason(rounds: list[dict[str, Any]], run_dir: Path) -> str:
    """One line: why no round changed the global model, each site's first failure."""
    first: dict[str, str] = {}
    for failure in (f for r in rounds for f in r["failures"]):
        who = failure.get("site") or f"node {failure['node']}"
        first.setdefault(who, str(failure["reason"]).strip().splitlines()[-1][:300])
    why = "; ".join(f"{who}: {reason}" for who, reason in sorted(first.items()))
    reasons = [r["discard_reason"] for r in rounds if r.get("discard_reason")]
    last = reasons[-1] if reasons else None
    return (f"no round aggregated an update ({len(rounds)} of {len(rounds)} discarded"
            + (f", {last}" if last else "") + ")"
            + (f"; {why}" if why else "")
            + f"; no model.pt was written, metrics.jsonl and summary.json are in {run_dir}")
