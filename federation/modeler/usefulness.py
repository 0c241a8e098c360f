"""evaluation.json's subgroup, decision-curve and quantile-calibration sections (issue N).

Simulation: the coordinator holds the rows, so each site's subgroups are computed as the site
would (``client.subgroups``, same k rule) and the pooled ones on all test rows together.
Deployment: only what the sites released (metrics.jsonl): pooled per-level counts, AUROC
(from summed group histograms), calibration-in-the-large and TPR/FPR; a pooled gap's CI
combines the sites' bootstrap CIs as independent normal errors (weights n_site / n). Under DP
the sites released only every level's noisy histograms: each site's figures and the pooled
ones (summed histograms) come from them (``federation.core.subgroup_histograms``).
Decision curves and the quantile calibration plot come from the class histograms in both
modes (exact at the 1/100 grid), so a deployment's report shows the same figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from client.releases import DEFAULT_MIN_CELL
from client.subgroups import site_subgroups
from federation.core.dataspec import DatasetSpec
from federation.core.decision_curve import (
    net_benefit,
    quantile_calibration,
    quantile_calibration_from_histograms,
    rates_at,
)
from federation.core.metrics import pooled_from_histograms, score_histograms
from federation.core.subgroup_histograms import from_site_record, pooled, released_subgroups
from federation.core.subgroups import GAPS

POOLED = "pooled"
_Z = 1.959963984540054
HISTS = ("score_hist_pos", "score_hist_neg")


def _strip(subgroups: dict[str, dict]) -> dict[str, dict]:
    """Without the histograms (they stay in metrics.jsonl; the JSON shows the metrics)."""
    return {
        feature: {
            "levels": {
                lv: {k: v for k, v in m.items() if k not in HISTS} for lv, m in found["levels"].items()
            },
            "gaps": found["gaps"],
        }
        for feature, found in subgroups.items()
    }


def subgroups_from_rows(sites, predictions, spec: DatasetSpec, threshold: float, seed: int) -> dict:
    """Per site (as the site computes and releases them) and pooled over all test rows."""
    if not spec.subgroup_features:
        return {}
    found = {
        s.name: site_subgroups(
            s.x_test, s.y_test, predictions[s.name][1], spec,
            min_cell=DEFAULT_MIN_CELL, threshold=threshold, seed=seed,
        )
        for s in sites
    }  # fmt: skip
    x = np.concatenate([s.x_test for s in sites])
    y, p = predictions[POOLED]
    pooled = site_subgroups(x, y, p, spec, min_cell=DEFAULT_MIN_CELL, threshold=threshold, seed=seed)
    return {"sites": {k: _strip(v) for k, v in found.items()}, POOLED: _strip(pooled)}


def _pooled_level(entries: list[dict], threshold: float) -> dict[str, Any]:
    """Counts and calibration in the large from every site that released the level; AUROC
    and TPR/FPR from the summed histograms, None unless every one of them sent its histograms
    (a site hiding another level of the feature sends none)."""
    n, n_pos = sum(e["n"] for e in entries), sum(e["n_positive"] for e in entries)
    mean_risk = sum(e["mean_risk"] * e["n"] for e in entries) / n
    pooled = {
        "n": int(n),
        "n_positive": int(n_pos),
        "mean_risk": mean_risk,
        "auroc": None,
        "citl": mean_risk - n_pos / n,
        "calibration_slope": None,  # not recoverable from histograms and means
        "tpr": None,
        "fpr": None,
    }
    if all(e.get("score_hist_pos") is not None for e in entries):
        pos = np.sum([e["score_hist_pos"] for e in entries], axis=0)
        neg = np.sum([e["score_hist_neg"] for e in entries], axis=0)
        tpr, spec = rates_at(pos, neg, threshold)
        pooled |= {"auroc": pooled_from_histograms(pos, neg)["auroc"], "tpr": tpr, "fpr": 1 - spec}
    return pooled


def _combined_ci(gap: float, sites: list[tuple[float, dict, str]]) -> tuple[float, float]:
    """Normal approximation: SE_s from each site's CI, combined with weights n_s / n."""
    total = sum(n for n, _, _ in sites)
    var = sum(
        ((n / total) * (g[f"{name}_ci_high"] - g[f"{name}_ci_low"]) / (2 * _Z)) ** 2 for n, g, name in sites
    )
    return gap - _Z * var**0.5, gap + _Z * var**0.5


def _pooled_gaps(levels: dict[str, dict], site_gaps: list[tuple[float, dict]]) -> dict[str, float]:
    out: dict[str, Any] = {}
    for gap, metric in GAPS.items():
        values = {lv: m[metric] for lv, m in levels.items() if m.get(metric) is not None}
        if len(values) < 2:
            continue
        out[gap] = max(values.values()) - min(values.values())
        usable = [(n, g, gap) for n, g in site_gaps if g.get(f"{gap}_ci_low") is not None]
        if usable:
            out[f"{gap}_ci_low"], out[f"{gap}_ci_high"] = _combined_ci(out[gap], usable)
    return out


def _from_dp_releases(site_subgroups_: dict[str, dict], threshold: float) -> dict:
    """DP releases: each site's figures at the threshold and the pooled ones, all from the
    levels' noisy histograms (pooled: summed, their noise variances added)."""
    released = {name: from_site_record(found) for name, found in site_subgroups_.items()}
    sites = {name: released_subgroups(r, threshold=threshold) for name, r in released.items()}
    everyone = released_subgroups(pooled(list(released.values())), threshold=threshold)
    return {"sites": {k: _strip(v) for k, v in sites.items()}, POOLED: _strip(everyone)}


def _is_dp_release(found: dict[str, dict]) -> bool:
    return any("noise_std" in m for entry in found.values() for m in entry["levels"].values())


def subgroups_from_sites(site_subgroups_: dict[str, dict], threshold: float) -> dict:
    """Deployment: pool the sites' released levels (a level pools the sites that released it)."""
    if not site_subgroups_:
        return {}
    if all(_is_dp_release(found) for found in site_subgroups_.values()):
        return _from_dp_releases(site_subgroups_, threshold)
    site_subgroups_ = {name: _rethreshold(found, threshold) for name, found in site_subgroups_.items()}
    pooled = {}
    features = sorted({f for found in site_subgroups_.values() for f in found})
    for feature in features:
        per_site = [found[feature] for found in site_subgroups_.values() if feature in found]
        levels = sorted({lv for s in per_site for lv in s["levels"]})
        pooled_levels = {
            lv: _pooled_level([s["levels"][lv] for s in per_site if lv in s["levels"]], threshold)
            for lv in levels
        }
        site_gaps = [(sum(m["n"] for m in s["levels"].values()), s["gaps"]) for s in per_site]
        pooled[feature] = {"levels": pooled_levels, "gaps": _pooled_gaps(pooled_levels, site_gaps)}
    return {"sites": {k: _strip(v) for k, v in site_subgroups_.items()}, POOLED: pooled}


def _rethreshold(found: dict[str, dict], threshold: float) -> dict[str, dict]:
    """A site's TPR/FPR (released at 0.5) at the report's threshold, from its level histograms;
    their bootstrap CIs are the site's at 0.5 only, so they are dropped at another threshold."""
    if threshold == 0.5:
        return found
    out = {}
    for feature, entry in found.items():
        levels = {}
        for level, m in entry["levels"].items():
            unknown = {f"{r}_ci_{e}": None for r in ("tpr", "fpr") for e in ("low", "high")}
            tpr = spec = None
            if m.get("score_hist_pos") is not None:
                tpr, spec = rates_at(m["score_hist_pos"], m["score_hist_neg"], threshold)
            levels[level] = {**m, "tpr": tpr, "fpr": None if spec is None else 1 - spec, **unknown}
        drop = ("tpr_gap", "fpr_gap", "equalized_odds_difference")
        gaps = {k: (None if k.startswith(drop) else v) for k, v in entry["gaps"].items()}
        out[feature] = {"levels": levels, "gaps": gaps}
    return out


def headline(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Worst-site AUROC, and worst-group AUROC of the pooled subgroups (None if none)."""
    sites = [(m.get("auroc"), s) for s, m in evaluation["sites"].items() if m.get("auroc") is not None]
    worst_site = min(sites) if sites else None
    groups = [
        (m["auroc"], feature, level)
        for feature, found in ((evaluation.get("subgroups") or {}).get(POOLED) or {}).items()
        for level, m in found["levels"].items()
        if m.get("auroc") is not None and np.isfinite(m["auroc"])
    ]
    worst_group = min(groups) if groups else None
    return {
        "worst_site_auroc": {"site": worst_site[1], "auroc": worst_site[0]} if worst_site else None,
        "worst_group_auroc": (
            {"feature": worst_group[1], "level": worst_group[2], "auroc": worst_group[0]}
            if worst_group
            else None
        ),
    }


def histograms_of(predictions) -> dict[str, tuple[list, list]]:
    return {name: score_histograms(y, p) for name, (y, p) in predictions.items()}


def curves(histograms: dict[str, tuple[list, list]]) -> dict[str, Any]:
    """Decision curve per site and pooled (the pooled one from the summed histograms)."""
    sites = {name: h for name, h in histograms.items() if name != POOLED}
    pos = np.sum([h[0] for h in sites.values()], axis=0)
    neg = np.sum([h[1] for h in sites.values()], axis=0)
    return {"sites": {name: net_benefit(*h) for name, h in sites.items()}, POOLED: net_benefit(pos, neg)}


def calibration_from_rows(predictions) -> dict[str, Any]:
    return {name: quantile_calibration(y, p) for name, (y, p) in predictions.items()}


def calibration_from_histograms(histograms: dict[str, tuple[list, list]]) -> dict[str, Any]:
    sites = {name: h for name, h in histograms.items() if name != POOLED}
    pos = np.sum([h[0] for h in sites.values()], axis=0)
    neg = np.sum([h[1] for h in sites.values()], axis=0)
    return {
        **{name: quantile_calibration_from_histograms(*h) for name, h in sites.items()},
        POOLED: quantile_calibration_from_histograms(pos, neg),
    }
