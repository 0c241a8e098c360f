"""Subgroup metrics from a DP release of the levels' class score histograms (issue P).

Under DP a site releases, once per run, every subgroup level's noisy class histograms of its
test split (``client.subgroup_release``) and nothing else about its subgroups: no exact n, no
metric. Whoever holds the release (the coordinator: per site in ``metrics.jsonl``, pooled by
summing the sites') computes the same per-level figures the exact path reports (n, positives,
mean risk, AUROC, calibration in the large, calibration slope, TPR and FPR at a threshold) and
the per-feature gaps: post-processing, free of further ε.

Counts are used as released, negative ones included, wherever a figure is a sum or a ratio of
sums (no bias from zero-mean noise, as in :mod:`federation.core.histogram_metrics`); the
calibration slope's fit takes them clipped at 0. Each interval is the estimate ± 1.96 standard
deviations of parametric resamples that redraw the counts and the noise (the same method as
the pooled test release's AUROC interval): it includes the noise, so a small level's interval
is wide. A figure whose noisy denominator (the level's count, or a class's) is not above 1.96
of its noise std is NaN: the release leaves it undefined. A gap's resample is the difference
of its two levels' resamples (the levels' bins are disjoint). The resamples' randomness is the
coordinator's own: the release is already protected, so a fixed seed keeps the records
reproducible.
"""

from __future__ import annotations

import numpy as np

from federation.core.histogram_metrics import (
    NORMAL_95,
    RELEASE_GROUPS,
    _auroc,
    bin_centres,
    coarsen,
    parametric_resamples,
    spread,
)
from federation.core.subgroups import (
    SUBGROUP_RESAMPLES,
    feature_gaps,
    histogram_slopes,
    undefined_below_minimum,
)

SEED = 0
_BOUNDED = ("auroc", "tpr", "fpr")  # rates: their intervals stay within [0, 1]

# feature -> level -> (positives' coarse histogram, negatives', noise std per coarse bin)
Released = dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]]


def _ratio(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, part / whole, np.nan)


def level_draws(pos: np.ndarray, neg: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Each level figure for each row of class histograms (rows × coarse bins)."""
    centres = bin_centres(pos.shape[-1])
    above = centres >= threshold
    n, n_pos = (pos + neg).sum(-1), pos.sum(-1)
    mean_risk = _ratio(((pos + neg) * centres).sum(-1), n)
    return {
        "n": n,
        "n_positive": n_pos,
        "mean_risk": mean_risk,
        "auroc": _auroc(pos, neg),
        "citl": mean_risk - _ratio(n_pos, n),
        "calibration_slope": histogram_slopes(np.maximum(pos, 0), np.maximum(neg, 0), centres),
        "tpr": np.clip(_ratio(pos[..., above].sum(-1), n_pos), 0, 1),
        "fpr": np.clip(_ratio(neg[..., above].sum(-1), neg.sum(-1)), 0, 1),
    }


def _undefined_under_the_noise(pos: np.ndarray, neg: np.ndarray, noise_std: float) -> dict[str, bool]:
    """Which figures the release leaves undefined: a ratio whose noisy denominator is not clearly
    above 0 (by 1.96 of its noise std: a sum of bins) would be the noise's, not the level's, and
    its resamples (drawn around counts clipped at 0) would not say so."""
    bins = len(pos)

    def unclear(total: float, summed_bins: int) -> bool:
        return not total > NORMAL_95 * noise_std * np.sqrt(summed_bins)

    n, pos_total, neg_total = (
        unclear(pos.sum() + neg.sum(), 2 * bins),
        unclear(pos.sum(), bins),
        unclear(neg.sum(), bins),
    )
    return {
        "mean_risk": n,
        "citl": n,
        "tpr": pos_total,
        "fpr": neg_total,
        "auroc": pos_total or neg_total,
        "calibration_slope": pos_total or neg_total,
    }


def normal_interval(point: float, draws: np.ndarray, bounded: bool = False) -> tuple[float, float]:
    """point ± 1.96 standard deviations of the draws (NaN if either is undefined)."""
    draws = draws[np.isfinite(draws)]
    if not np.isfinite(point) or len(draws) < 2:
        return float("nan"), float("nan")
    half = NORMAL_95 * float(np.std(draws))
    low, high = point - half, point + half
    return (max(low, 0.0), min(high, 1.0)) if bounded else (low, high)


def level_metrics(
    pos: np.ndarray, neg: np.ndarray, *, noise_std: float, threshold: float, rng, resamples: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """One level's figures with intervals, and its resamples (for the gaps)."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    point = level_draws(pos[None], neg[None], threshold)
    for name, undefined in _undefined_under_the_noise(pos, neg, noise_std).items():
        point[name] = np.full(1, np.nan) if undefined else point[name]
    draws = parametric_resamples(pos, neg, noise_std=noise_std, rng=rng, resamples=resamples)
    boot = level_draws(draws[:, 0], draws[:, 1], threshold)
    out = {name: float(point[name][0]) for name in ("n", "n_positive", "mean_risk")}
    for name in ("auroc", "citl", "calibration_slope", "tpr", "fpr"):
        out[name] = float(point[name][0])
        low, high = normal_interval(out[name], boot[name], bounded=name in _BOUNDED)
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    # a level whose noisy class counts are below the floor is too few to estimate (issue T.5)
    return undefined_below_minimum(out, out["n_positive"], out["n"] - out["n_positive"]), boot


def released_subgroups(
    released: Released, *, threshold: float = 0.5, resamples: int = SUBGROUP_RESAMPLES, seed: int = SEED
) -> dict[str, dict]:
    """feature -> {"levels": {level: figures, intervals, wire histograms, noise std}, "gaps": {...}},
    the nesting of ``client.subgroups.site_subgroups`` (reports read both alike)."""
    rng = np.random.default_rng(seed)
    out = {}
    for feature, levels in released.items():
        points, boots = {}, {}
        for level, (pos, neg, std) in levels.items():
            points[level], boots[level] = level_metrics(
                pos, neg, noise_std=std, threshold=threshold, rng=rng, resamples=resamples
            )
            points[level] |= {"score_hist_pos": spread(pos), "score_hist_neg": spread(neg), "noise_std": std}
        out[feature] = {"levels": points, "gaps": feature_gaps(points, boots, normal_interval)}
    return out


def from_site_record(found: dict[str, dict], noise_std: float | None = None) -> Released:
    """The release inside a site's parsed subgroups (``client.subgroups.from_wire``, or a
    record already computed here): wire histograms back to coarse bins, with each level's noise."""
    return {
        feature: {
            level: (
                coarsen(m["score_hist_pos"], RELEASE_GROUPS),
                coarsen(m["score_hist_neg"], RELEASE_GROUPS),
                float(m["noise_std"] if noise_std is None else noise_std),
            )
            for level, m in entry["levels"].items()
        }
        for feature, entry in found.items()
    }


def pooled(sites: list[Released]) -> Released:
    """The sites' releases summed per level (the sites that released it); noise variances add."""
    out: Released = {}
    for site in sites:
        for feature, levels in site.items():
            for level, (pos, neg, std) in levels.items():
                old = out.setdefault(feature, {}).get(level)
                if old is not None:
                    pos, neg, std = old[0] + pos, old[1] + neg, float(np.hypot(old[2], std))
                out[feature][level] = (pos, neg, std)
    return out
