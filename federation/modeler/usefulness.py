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
from client.subgroups import HISTOGRAMS_WITHHELD, site_subgroups
from federation.core.dataspec import DatasetSpec
from federation.core.decision_curve import (
    net_benefit,
    quantile_calibration,
    quantile_calibration_from_histograms,
    rates_at,
)
from federation.core.estimable import NOT_ESTIMABLE, withhold_too_few
from federation.core.metrics import pooled_from_histograms, score_histograms
from federation.core.subgroup_histograms import from_site_record, pooled, released_subgroups
from federation.core.subgroups import GAPS, spec_levels

POOLED = "pooled"
_Z = 1.959963984540054
HISTS = ("score_hist_pos", "score_hist_neg")


LEVEL_MEASURES = ("auroc", "calibration_slope", "tpr", "fpr")
K_RULE = {
    "reason": "k_rule",
    "text": "withheld by the site's k rule (min-cell-size): under k rows of a class, or hidden "
    "with such a level so that none comes back by subtraction",
}


def _annotated(m: dict[str, Any], noisy: bool) -> dict[str, Any]:
    """A level without its histograms, its too-few measures None with their reason."""
    m = {k: v for k, v in m.items() if k not in HISTS}
    events, n = m.get("n_positive"), m.get("n")
    non_events = None if events is None or n is None else n - events
    return withhold_too_few(m, events, non_events, noisy=noisy, measures=LEVEL_MEASURES)


def _strip(subgroups: dict[str, dict], noisy: bool = False) -> dict[str, dict]:
    """Without the histograms (they stay in metrics.jsonl; the JSON shows the metrics), each
    measure a level has too few events or non-events for marked, what was withheld kept."""
    return {
        feature: {
            "levels": {lv: _annotated(m, noisy) for lv, m in found["levels"].items()},
            "gaps": found["gaps"],
            **({"withheld": found["withheld"]} if found.get("withheld") else {}),
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


SLOPE_NOT_POOLED = {
    "reason": "not_recoverable",
    "text": "not pooled: the slope needs the rows' risks, not the sites' histograms and means",
}


def _pooled_level(entries: dict[str, dict], threshold: float) -> dict[str, Any]:
    """Counts and calibration in the large from every site that released the level (``sites``
    names them); AUROC and TPR/FPR from the summed histograms, None, with the reason, unless
    every one of them sent its histograms (a site hiding another level of the feature sends none)."""
    n = sum(e["n"] for e in entries.values())
    n_pos = sum(e["n_positive"] for e in entries.values())
    mean_risk = sum(e["mean_risk"] * e["n"] for e in entries.values()) / n
    pooled = {
        "n": int(round(n)),
        "n_positive": int(round(n_pos)),
        "mean_risk": mean_risk,
        "auroc": None,
        "citl": mean_risk - n_pos / n,
        "calibration_slope": None,  # not recoverable from histograms and means
        "tpr": None,
        "fpr": None,
        "sites": sorted(entries),
        "withheld_measures": {"calibration_slope": SLOPE_NOT_POOLED},
    }
    hidden = sorted(name for name, e in entries.items() if e.get("score_hist_pos") is None)
    if not hidden:
        pos = np.sum([e["score_hist_pos"] for e in entries.values()], axis=0)
        neg = np.sum([e["score_hist_neg"] for e in entries.values()], axis=0)
        tpr, spec = rates_at(pos, neg, threshold)
        pooled |= {"auroc": pooled_from_histograms(pos, neg)["auroc"], "tpr": tpr, "fpr": 1 - spec}
    else:
        why = {
            "reason": "site_hid_part_of_feature",
            "text": f"not pooled: {', '.join(hidden)} hid part of this feature, so sent no "
            "histograms of its levels",
        }
        pooled["withheld_measures"] |= {m: why for m in ("auroc", "tpr", "fpr")}
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
    return {
        "sites": {k: _strip(v, noisy=True) for k, v in sites.items()},
        POOLED: _strip(everyone, noisy=True),
    }


def _is_dp_release(found: dict[str, dict]) -> bool:
    return any("noise_std" in m for entry in found.values() for m in entry["levels"].values())


def _site_withheld(found: dict[str, dict], expected: dict[str, list[str]]) -> dict[str, dict]:
    """A site's release with what it withheld named: each of the spec's levels it did not send
    (the k rule), and its histograms where it sent levels without them."""
    out = {feature: dict(entry) for feature, entry in found.items()}
    for feature, levels in expected.items():
        entry = out.setdefault(feature, {"levels": {}, "gaps": {}})
        withheld = {lv: K_RULE for lv in levels if lv not in entry["levels"]}
        if entry["levels"] and any(m.get("score_hist_pos") is None for m in entry["levels"].values()):
            withheld[HISTOGRAMS_WITHHELD] = {
                "reason": HISTOGRAMS_WITHHELD,
                "text": "score histograms withheld: the site hid part of this feature",
            }
        if withheld:
            entry["withheld"] = withheld
    return out


def _pooled_feature(per_site: dict[str, dict], threshold: float) -> dict[str, Any]:
    """One feature pooled over the sites: a level pools the sites that released it; one released
    by a single site is that site's row, not a pooled figure, so it is withheld here with why."""
    levels = sorted({lv for s in per_site.values() for lv in s["levels"]})
    pooled_levels, withheld = {}, {}
    for lv in levels:
        entries = {name: s["levels"][lv] for name, s in per_site.items() if lv in s["levels"]}
        if len(entries) < 2:
            only = next(iter(entries))
            withheld[lv] = {
                "reason": "single_site",
                "text": f"not pooled: only {only} released this level (its row is {only}'s)",
            }
            continue
        pooled_levels[lv] = _pooled_level(entries, threshold)
        missing = sorted(set(per_site) - set(entries))
        if missing:
            pooled_levels[lv]["withheld_by"] = missing
    if not per_site:
        withheld["all levels"] = {
            "reason": "no_site_released",
            "text": "no site released a level of this feature",
        }
    site_gaps = [(sum(m["n"] for m in s["levels"].values()), s["gaps"]) for s in per_site.values()]
    levels_out = {lv: _annotated(m, False) for lv, m in pooled_levels.items()}
    return {
        "levels": levels_out,
        "gaps": _pooled_gaps(levels_out, site_gaps),
        **({"withheld": withheld} if withheld else {}),
    }


def subgroups_from_sites(
    site_subgroups_: dict[str, dict], threshold: float, spec: DatasetSpec | None = None
) -> dict:
    """Deployment: pool the sites' released levels (a level pools the sites that released it);
    with the run's ``spec``, each level a site withheld is named with why."""
    expected = spec_levels(spec) if spec is not None else {}
    sent = {name: found for name, found in site_subgroups_.items() if found}
    if not sent and not expected:
        return {}
    if sent and all(_is_dp_release(found) for found in sent.values()):
        return _from_dp_releases(sent, threshold)
    site_subgroups_ = {
        name: _site_withheld(_rethreshold(found, threshold), expected)
        for name, found in site_subgroups_.items()
    }
    features = sorted({f for found in site_subgroups_.values() for f in found})
    pooled = {
        feature: _pooled_feature(
            {
                name: found[feature]
                for name, found in site_subgroups_.items()
                if (found.get(feature) or {}).get("levels")
            },
            threshold,
        )
        for feature in features
    }
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
        out[feature] = {**entry, "levels": levels, "gaps": gaps}
    return out


def _interval(m: dict[str, Any]) -> list | None:
    low, high = m.get("auroc_ci_low"), m.get("auroc_ci_high")
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        return [low, high]
    return m.get("auroc_ci")


def headline(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Worst-site AUROC, and worst-group AUROC of the pooled subgroups (None if none), each with
    its 95% CI, chosen only among those estimable (a site or group with too few events or
    non-events has AUROC None and its reason: ``sites_too_few`` names them)."""
    estimable = [
        (m["auroc"], s)
        for s, m in evaluation["sites"].items()
        if m.get("auroc") is not None and np.isfinite(m["auroc"])
    ]
    worst_site = min(estimable) if estimable else None
    too_few = {
        s: m[NOT_ESTIMABLE]["auroc"]["text"]
        for s, m in evaluation["sites"].items()
        if "auroc" in (m.get(NOT_ESTIMABLE) or {})
    }
    groups = [
        (m["auroc"], feature, level, _interval(m))
        for feature, found in ((evaluation.get("subgroups") or {}).get(POOLED) or {}).items()
        for level, m in found["levels"].items()
        if m.get("auroc") is not None and np.isfinite(m["auroc"])
    ]
    worst_group = min(groups, key=lambda g: g[:3]) if groups else None
    return {
        "worst_site_auroc": (
            {
                "site": worst_site[1],
                "auroc": worst_site[0],
                "auroc_ci": _interval(evaluation["sites"][worst_site[1]]),
            }
            if worst_site
            else None
        ),
        "sites_too_few": too_few,
        "worst_group_auroc": (
            {
                "feature": worst_group[1],
                "level": worst_group[2],
                "auroc": worst_group[0],
                "auroc_ci": worst_group[3],
            }
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
