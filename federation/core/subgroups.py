"""Subgroup metrics of a risk model (issue N.1): per level of a subgroup feature, with CIs.

Pure functions over an encoded feature matrix, labels ``y`` and risks ``p``. The site runs
them on its held-out test rows (``client.subgroups`` releases what they return under k); the
modeler runs them on the rows a simulation holds. Per group: n, positives, AUROC,
calibration-in-the-large (mean risk − observed rate), calibration slope, TPR/FPR at the
threshold, each with a percentile-bootstrap CI from resampling inside each group (the groups
are disjoint, so a gap's resample is the difference of the groups' resamples). Gaps per
feature: AUROC gap, calibration gaps and the equalized-odds difference (highest − lowest level).
"""

from __future__ import annotations

import numpy as np

from federation.core.dataspec import DatasetSpec, FeatureSpec, value_text
from federation.core.estimable import too_few
from federation.core.metrics import CI_LEVEL, bootstrap_aurocs

SUBGROUP_RESAMPLES = 200
_EPS = 1e-7
GROUP_METRICS = ("auroc", "citl", "calibration_slope", "tpr", "fpr")
GAPS = {  # gap name -> the group metric it spreads (max - min over a feature's levels)
    "auroc_gap": "auroc",
    "citl_gap": "citl",
    "slope_gap": "calibration_slope",
    "tpr_gap": "tpr",
    "fpr_gap": "fpr",
}


def _columns(spec: DatasetSpec) -> dict[str, slice]:
    out, start = {}, 0
    for feat in spec.features:
        width = len(feat.encoded_names())
        out[feat.name] = slice(start, start + width)
        start += width
    return out


def band_labels(bins: tuple[float, ...]) -> list[str]:
    """``[40, 65]`` -> ``['<40', '40-<65', '>=65']``."""
    cuts = [value_text(b) for b in bins]
    return [f"<{cuts[0]}"] + [f"{a}-<{b}" for a, b in zip(cuts, cuts[1:])] + [f">={cuts[-1]}"]


def level_masks(x: np.ndarray, feat: FeatureSpec, cols: slice) -> dict[str, np.ndarray]:
    """Rows of each level (band) of one subgroup feature; rows missing it are in none."""
    block = x[:, cols]
    observed = ~np.isnan(block).any(axis=1)
    if feat.type == "numeric":
        edges = np.digitize(np.nan_to_num(block[:, 0]), feat.subgroup_bins)
        return {label: observed & (edges == i) for i, label in enumerate(band_labels(feat.subgroup_bins))}
    if feat.type == "binary":
        return {value_text(v): observed & (block[:, 0] == v) for v in (0.0, 1.0)}
    masks = {value_text(lv): observed & (block[:, i] == 1) for i, lv in enumerate(feat.encoded_levels)}
    if feat.drop_first:
        masks = {value_text(feat.levels[0]): observed & (block == 0).all(axis=1), **masks}
    return masks


def feature_levels(feat: FeatureSpec) -> list[str]:
    """Every level (band) the spec gives a subgroup feature, in :func:`level_masks`' order."""
    if feat.type == "numeric":
        return band_labels(feat.subgroup_bins)
    if feat.type == "binary":
        return [value_text(v) for v in (0.0, 1.0)]
    return [value_text(lv) for lv in feat.levels]


def spec_levels(spec: DatasetSpec) -> dict[str, list[str]]:
    """feature -> its levels, for every subgroup feature of the spec (what a report expects)."""
    return {f.name: feature_levels(f) for f in spec.subgroup_features}


def subgroup_masks(x: np.ndarray, spec: DatasetSpec) -> dict[str, dict[str, np.ndarray]]:
    """feature -> level -> row mask, for every subgroup feature of the spec."""
    cols = _columns(spec)
    return {f.name: level_masks(x, f, cols[f.name]) for f in spec.subgroup_features}


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


def batch_slopes(logit: np.ndarray, y: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Calibration slope b of logit P(y) = a + b·logit(p) for each row (a resample) at once.

    Newton's method on the two-parameter logistic likelihood, vectorized over resamples:
    hand-written because scikit-learn fits one resample at a time (200 resamples × levels ×
    sites per evaluation). Equal to ``metrics.calibration_slope_intercept`` where that
    converges (tested); NaN where a resample has one class only or is separable.
    """
    return batch_calibration(logit, y, iterations)[0]


def batch_calibration(
    logit: np.ndarray, y: np.ndarray, iterations: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """Slope b and intercept a of :func:`batch_slopes`' fit for each row, both NaN where the
    slope is (one class, separable, or no convergence)."""
    a, b = np.zeros(len(logit)), np.ones(len(logit))
    with np.errstate(all="ignore"):
        a, b = _newton(a, b, logit, y, iterations)
    one_class = (y.sum(1) == 0) | (y.sum(1) == y.shape[1])
    bad = one_class | ~np.isfinite(b) | (np.abs(b) > 1e3) | ~np.isfinite(a)
    return np.where(bad, np.nan, b), np.where(bad, np.nan, a)


def histogram_slopes(pos: np.ndarray, neg: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Calibration slope of each row of class histograms (resamples × bins, counts >= 0) at the
    bins' centres: :func:`batch_slopes`' fit with each bin a row weighted by its count, so the
    parametric resamples of a DP release fit at once. NaN as there, or with no count of a class."""
    logit = np.broadcast_to(np.concatenate([_logit(centres), _logit(centres)]), (len(pos), 2 * len(centres)))
    labels = np.concatenate([np.ones_like(pos), np.zeros_like(neg)], axis=1)
    a, b = np.zeros(len(pos)), np.ones(len(pos))
    with np.errstate(all="ignore"):
        a, b = _newton(a, b, logit, labels, 25, weights=np.concatenate([pos, neg], axis=1))
    one_class = (pos.sum(1) <= 0) | (neg.sum(1) <= 0)
    return np.where(one_class | ~np.isfinite(b) | (np.abs(b) > 1e3), np.nan, b)


def _newton(a, b, logit, y, iterations, weights=None):
    """Newton steps of the (optionally row-weighted: binned counts) calibration fit."""
    weights = 1.0 if weights is None else weights
    for _ in range(iterations):
        eta = np.clip(a[:, None] + b[:, None] * logit, -30, 30)
        mu = 1 / (1 + np.exp(-eta))
        w = weights * mu * (1 - mu)
        r = weights * (y - mu)
        g0, g1 = r.sum(1), (r * logit).sum(1)
        h00, h01, h11 = w.sum(1), (w * logit).sum(1), (w * logit * logit).sum(1)
        det = h00 * h11 - h01**2
        step_a, step_b = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        a, b = a + step_a, b + step_b
        if np.nanmax(np.abs(np.r_[step_a, step_b]), initial=0.0) < 1e-12:  # converged (quadratically)
            break
    return a, b


def _rates(called: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = y.sum(-1), (1 - y).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (called * y).sum(-1) / pos, (called * (1 - y)).sum(-1) / neg


def group_draws(y: np.ndarray, p: np.ndarray, threshold: float, draws: np.ndarray) -> dict[str, np.ndarray]:
    """Each group metric for each row of ``draws`` (indices into ``y``, ``p``)."""
    yd, pd_ = y[draws].astype(float), p[draws]
    tpr, fpr = _rates((pd_ >= threshold).astype(float), yd)
    return {
        "auroc": bootstrap_aurocs(y, p, draws),
        "citl": pd_.mean(1) - yd.mean(1),
        "calibration_slope": batch_slopes(_logit(p)[draws], yd),
        "tpr": tpr,
        "fpr": fpr,
    }


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _with_ci(
    point: dict[str, np.ndarray], boot: dict[str, np.ndarray], names, interval=None
) -> dict[str, float]:
    """Each metric and its CI: ``interval(point, draws)``, by default the draws' percentiles."""
    out = {}
    for name in names:
        out[name] = float(point[name][0])
        found = interval(out[name], boot[name]) if interval else _interval(boot[name])
        if not np.isfinite(out[name]):  # no interval without its point (issue T.5: "n/a [8.783, 19.449]")
            found = (float("nan"), float("nan"))
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = found
    return out


def undefined_below_minimum(metrics: dict[str, float], events: float, non_events: float) -> dict[str, float]:
    """``metrics`` with each measure its level has too few events or non-events for
    (``federation.core.estimable``) set to NaN, with its interval: never reported, and left out
    of the feature's gaps (issue T.5: an 8-row level showed AUROC 1.000 [1.000, 1.000])."""
    out = dict(metrics)
    for name in GROUP_METRICS:
        if name in out and too_few(name, events, non_events) is not None:
            out[name] = out[f"{name}_ci_low"] = out[f"{name}_ci_high"] = float("nan")
    return out


def group_metrics(
    y: np.ndarray, p: np.ndarray, *, threshold: float, resamples: int, rng: np.random.Generator
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """One group's metrics with CIs, and its bootstrap draws (for the gaps)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    point = group_draws(y, p, threshold, np.arange(len(y))[None, :])
    boot = group_draws(y, p, threshold, rng.integers(0, len(y), size=(resamples, len(y))))
    metrics = {"n": int(len(y)), "n_positive": int(y.sum()), "mean_risk": float(p.mean())}
    found = {**metrics, **_with_ci(point, boot, GROUP_METRICS)}
    return undefined_below_minimum(found, int(y.sum()), int(len(y) - y.sum())), boot


def _pair_gap(points, boots, metric: str) -> tuple[float, np.ndarray]:
    """Highest minus lowest level on the point estimates, and the same pair's difference in
    each resample: a signed difference, so its CI can hold 0 (a max - min of every resample
    cannot)."""
    levels = [lv for lv in points if np.isfinite(points[lv][metric])]
    if len(levels) < 2:
        return float("nan"), np.full(len(next(iter(boots.values()))[metric]), np.nan)
    hi = max(levels, key=lambda lv: points[lv][metric])
    lo = min(levels, key=lambda lv: points[lv][metric])
    return points[hi][metric] - points[lo][metric], boots[hi][metric] - boots[lo][metric]


def feature_gaps(
    points: dict[str, dict[str, float]], boots: dict[str, dict[str, np.ndarray]], interval=None
) -> dict[str, float]:
    """Per metric, the gap between the levels with the highest and lowest value, and the
    equalized-odds difference (the larger of the TPR and FPR gaps, fairlearn's), with CIs
    (``interval``: as :func:`_with_ci`; a DP release's are normal, federation.core.subgroup_histograms)."""
    if len(points) < 2:
        return {}
    gaps = {gap: _pair_gap(points, boots, metric) for gap, metric in GAPS.items()}
    point = {gap: np.array([value]) for gap, (value, _) in gaps.items()}
    boot = {gap: draws for gap, (_, draws) in gaps.items()}
    out = _with_ci(point, boot, list(GAPS), interval)
    return out | equalized_odds(out)


def _away_from_zero(low: float, high: float) -> tuple[float, float]:
    """The interval of |gap| implied by the gap's interval [low, high]: from its distance to 0
    (0 when it holds 0) to its farthest end."""
    near = 0.0 if low <= 0 <= high else min(abs(low), abs(high))
    return near, max(abs(low), abs(high))


def equalized_odds(gaps: dict[str, float]) -> dict[str, float]:
    """fairlearn's equalized-odds difference, max(TPR gap, FPR gap), and its interval from the
    two gaps' own: [the larger distance of either interval from 0, the farthest end of either].

    Why not the resamples' max(|TPR gap|, |FPR gap|): a max of absolute values is biased up in
    every resample, so its percentile interval excluded 0 always and could miss its own point
    (issue T: 0.019 [0.022, 0.261]). This one holds the point whenever the gaps' intervals hold
    theirs, and excludes 0 exactly when the TPR or the FPR gap's interval does."""
    name = "equalized_odds_difference"
    parts = [(gaps[f"{g}"], gaps[f"{g}_ci_low"], gaps[f"{g}_ci_high"]) for g in ("tpr_gap", "fpr_gap")]
    if not all(np.isfinite(v) for part in parts for v in part):
        value = (
            float(np.nanmax([p[0] for p in parts])) if any(np.isfinite(p[0]) for p in parts) else float("nan")
        )
        return {name: value, f"{name}_ci_low": float("nan"), f"{name}_ci_high": float("nan")}
    bounds = [_away_from_zero(low, high) for _, low, high in parts]
    return {
        name: float(max(abs(p[0]) for p in parts)),
        f"{name}_ci_low": float(max(b[0] for b in bounds)),
        f"{name}_ci_high": float(max(b[1] for b in bounds)),
    }
