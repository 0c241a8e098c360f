"""``summary.json``: the run's final metrics and privacy spent, in one fixed shape (pure)."""

from __future__ import annotations

from typing import Any

from federation.settings import RunSettings

POOLED_KEYS = ("auroc", "auprc", "brier")
SITE_KEYS = ("auroc", "auprc", "brier", "n_test")


def build_summary(settings: RunSettings, rounds: list[dict[str, Any]],
                  epsilon_by_site: dict[str, float]) -> dict[str, Any]:
    """Final evaluation of the last round, and the largest ε each site reported."""
    evaluation = rounds[-1]["evaluate"] if rounds else {"pooled": {}, "sites": {}}
    return {
        "rounds": len(rounds),
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
            "sites": {site: {"epsilon": eps} for site, eps in sorted(epsilon_by_site.items())},
        },
    }
