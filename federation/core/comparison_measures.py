"""Champion vs challenger on the measures the promotion rule judges, from class histograms (pure).

A compare reply carries each model's class score histograms on the site's test rows: exact
(k-grouped) ones when DP is off, one Gaussian release of both at the site's query ε under DP
(``client.release_replies.two_model_release``). From them, per site and pooled (summed):

- ``auroc``: Mann-Whitney AUROC of the binned scores (ties inside a bin count half);
- ``ece``: expected calibration error over ECE_BINS equal-width bins (counts clipped at 0);
- ``net_benefit``: TP/n − FP/n · t/(1 − t) at the threshold t (the patients in bins ≥ t,
  as the decision curves count them; n the noisy total).

Each difference (challenger − champion) gets a 95 % interval: the estimate ± 1.96 standard
deviations of parametric resamples of *both* models' histograms drawn in one loop (Poisson
counts around the released ones plus fresh noise of the summed noise variance, as
``pooled_auroc_uncertainty`` does for one model). The histograms are each model's marginal
counts, so the pairing of the two models on the same rows is not known here: the two are
resampled independently, which overstates the sampling part of the error for positively
correlated models (the interval is conservative: wider, never narrower, on that part). The
DP noise of the two models' bins is independent, so that part is exact. A fixed seed keeps
the figures reproducible (the resampling is of public numbers).
"""

from __future__ import annotations

import numpy as np

from federation.core.histogram_metrics import (
    CI_RESAMPLES,
    NORMAL_95,
    RELEASE_GROUPS,
    _auroc,
    bin_centres,
    coarsen,
    parametric_resamples,
    pooled_noise_std,
)
from federation.core.metrics import ECE_BINS, HIST_BINS

MEASURES = ("auroc", "ece", "net_benefit")
HIGHER_IS_BETTER = {"auroc": True, "ece": False, "net_benefit": True}
LABELS = {"auroc": "AUROC", "ece": "ECE", "net_benefit": "net benefit"}


def net_benefit_at(pos: np.ndarray, neg: np.ndarray, threshold: float) -> np.ndarray:
    """Net benefit at ``threshold`` of wire histograms (last axis: HIST_BINS bins): TP/n − FP/n ·
    t/(1 − t), the patients called positive those in bins at or above t (t on the 1/100 grid)."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    start = int(min(HIST_BINS - 1, max(0, round(float(threshold) * HIST_BINS))))
    tp, fp = pos[..., start:].sum(axis=-1), neg[..., start:].sum(axis=-1)
    n = pos.sum(axis=-1) + neg.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, tp / n - fp / n * threshold / (1 - threshold), np.nan)


def _ece_many(pos: np.ndarray, neg: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``histogram_metrics._ece`` of each row of (rows, bins) histograms, counts clipped at 0."""
    pos, neg = np.maximum(pos, 0), np.maximum(neg, 0)
    which = np.minimum((centres * ECE_BINS).astype(int), ECE_BINS - 1)
    merge = np.eye(ECE_BINS)[which]  # (bins, ECE_BINS): each released bin into its ECE bin
    count, risk, events = (pos + neg) @ merge, ((pos + neg) * centres) @ merge, pos @ merge
    total = count.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.abs(risk - events).sum(axis=-1) / total, np.nan)


def _values(pos: np.ndarray, neg: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Each measure of histograms of shape (..., bins): AUROC and ECE at their own bins, net
    benefit on the wire's bins (a coarse histogram spread evenly over them first)."""
    pos2, neg2 = np.atleast_2d(pos), np.atleast_2d(neg)
    bins = pos2.shape[-1]
    width = HIST_BINS // bins  # a coarse bin's count spread evenly over its wire bins, as sent
    wide_pos, wide_neg = np.repeat(pos2 / width, width, axis=-1), np.repeat(neg2 / width, width, axis=-1)
    return {
        "auroc": _auroc(pos2, neg2),
        "ece": _ece_many(pos2, neg2, bin_centres(bins)),
        "net_benefit": net_benefit_at(wide_pos, wide_neg, threshold),
    }


def compared_measures(
    champion: tuple, challenger: tuple, *, noise_stds: list[float], threshold: float
) -> dict[str, dict]:
    """Per measure: both models' values, the difference (challenger − champion) and its 95 %
    interval, from each model's wire histograms (pos, neg) summed over the sites whose release
    noise stds are ``noise_stds`` (all 0 or empty: exact releases, resampled on the wire bins;
    else coarsened to the released groups and resampled with the summed noise)."""
    noisy = bool(noise_stds) and all(std > 0 for std in noise_stds)
    std = pooled_noise_std(noise_stds) if noisy else 0.0
    hists = []
    for pos, neg in (champion, challenger):
        pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
        hists.append((coarsen(pos), coarsen(neg)) if noisy else (pos, neg))
    rng = np.random.default_rng(0)
    points, boots = [], []
    for pos, neg in hists:
        points.append(_values(pos, neg, threshold))
        draws = parametric_resamples(pos, neg, noise_std=std, rng=rng, resamples=CI_RESAMPLES)
        boots.append(_values(draws[:, 0], draws[:, 1], threshold))
    # the point estimates on the wire histograms as sent (AUROC as the pooled AUROC is computed)
    wire = [
        _values(np.asarray(p, dtype=float), np.asarray(q, dtype=float), threshold)
        for p, q in (champion, challenger)
    ]
    out = {}
    for name in MEASURES:
        old = float(wire[0][name][0]) if name != "ece" else float(points[0][name][0])
        new = float(wire[1][name][0]) if name != "ece" else float(points[1][name][0])
        difference = new - old
        boot = boots[1][name] - boots[0][name]
        if not np.isfinite(difference) or np.isnan(boot).all():
            interval = [float("nan"), float("nan")]
        else:
            half = NORMAL_95 * float(np.nanstd(boot))
            interval = [difference - half, difference + half]
        out[name] = {
            "champion": old,
            "challenger": new,
            "difference": difference,
            "difference_ci": interval,
        }
    return out


__all__ = ["MEASURES", "HIGHER_IS_BETTER", "LABELS", "RELEASE_GROUPS", "compared_measures", "net_benefit_at"]
