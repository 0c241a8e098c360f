"""95% CIs of every measure of a scored split, from one percentile bootstrap (issue T.6).

The AUROC's percentile bootstrap (:func:`federation.core.metrics.auroc_with_ci`: the same seed,
the same stream of resamples in the same chunks, so its interval is unchanged) computes, in the
same loop, every other measure of ``evaluation.json``'s metrics table on each resample: AUPRC
(scikit-learn's ``average_precision_score``, from tie groups), Brier, ECE, the calibration slope
and intercept (the vectorized Newton fit of ``federation.core.subgroups``), sensitivity and
specificity at the threshold. Each is checked against scikit-learn on single resamples
(tests/unit/test_metric_intervals.py). A resample where a measure is undefined (one class drawn)
is left out of that measure's percentiles, as for the AUROC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from federation.core.estimable import withhold_too_few
from federation.core.metrics import (
    _EPS,
    BOOTSTRAP_CHUNK_DRAWS,
    CI_LEVEL,
    ECE_BINS,
    bootstrap_aurocs,
    risk_metrics,
)
from federation.core.subgroups import batch_calibration

MEASURES = (
    "auroc",
    "auprc",
    "brier",
    "ece",
    "calibration_slope",
    "calibration_intercept",
    "sensitivity",
    "specificity",
)


def _group_counts(y: np.ndarray, groups: np.ndarray, n_groups: int, draws: np.ndarray):
    """Per resample (row of ``draws``) and group: rows drawn, and positives among them."""
    resamples = draws.shape[0]
    cell = (groups[draws] + n_groups * np.arange(resamples)[:, None]).ravel()
    drawn = np.bincount(cell, minlength=resamples * n_groups).reshape(resamples, n_groups)
    pos = np.bincount(cell, weights=y[draws].ravel(), minlength=resamples * n_groups)
    return drawn, pos.reshape(resamples, n_groups)


def bootstrap_auprcs(y: np.ndarray, p: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Average precision of each resample (scikit-learn's: Σ (R_k − R_k−1)·P_k over the distinct
    scores, highest first), from how often each resample draws each tie group of ``p``."""
    tie_group = np.unique(p, return_inverse=True)[1]
    drawn, pos = _group_counts(y, tie_group, int(tie_group.max()) + 1, draws)
    pos, drawn = pos[:, ::-1], drawn[:, ::-1]  # highest score first
    tp, called = np.cumsum(pos, axis=1), np.cumsum(drawn, axis=1)
    n_pos = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(called > 0, tp / called, 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    return np.where((n_pos > 0) & (n_pos < drawn.sum(axis=1)), ap, np.nan)


def bootstrap_eces(y: np.ndarray, p: np.ndarray, draws: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """``metrics.expected_calibration_error`` of each resample (equal-width risk bins)."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts, events = _group_counts(y, index, bins, draws)
    resamples = draws.shape[0]
    cell = (index[draws] + bins * np.arange(resamples)[:, None]).ravel()
    risk = np.bincount(cell, weights=p[draws].ravel(), minlength=resamples * bins).reshape(resamples, bins)
    return np.abs(risk - events).sum(axis=1) / draws.shape[1]


def bootstrap_measures(
    y: np.ndarray, p: np.ndarray, threshold: float, draws: np.ndarray
) -> dict[str, np.ndarray]:
    """Every measure of :data:`MEASURES` on each row of ``draws`` (indices into ``y``, ``p``)."""
    yd, pd_ = y[draws].astype(float), p[draws]
    q = np.clip(p, _EPS, 1 - _EPS)
    slope, intercept = batch_calibration(np.log(q / (1 - q))[draws], yd)
    called = pd_ >= threshold
    n_pos, n_neg = yd.sum(axis=1), (1 - yd).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(n_pos > 0, (called * yd).sum(axis=1) / n_pos, np.nan)
        specificity = np.where(n_neg > 0, (~called * (1 - yd)).sum(axis=1) / n_neg, np.nan)
    return {
        "auroc": bootstrap_aurocs(y, p, draws),
        "auprc": bootstrap_auprcs(y, p, draws),
        "brier": ((pd_ - yd) ** 2).mean(axis=1),
        "ece": bootstrap_eces(y, p, draws),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "sensitivity": sensitivity,
        "specificity": specificity,
    }


def _percentiles(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def metric_intervals(
    y: np.ndarray, p: np.ndarray, *, threshold: float, resamples: int, seed: int = 0
) -> dict[str, list[float] | None]:
    """``{measure}_ci``: [low, high], the 95% percentile-bootstrap interval of each measure (None
    when no resample defines it, or ``resamples`` is 0). The resamples are exactly
    ``auroc_with_ci``'s for the same ``seed``, so ``auroc_ci`` equals its interval."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if resamples == 0 or len(y) == 0:
        return {f"{m}_ci": None for m in MEASURES}
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CHUNK_DRAWS // len(y))
    parts: dict[str, list[np.ndarray]] = {m: [] for m in MEASURES}
    for start in range(0, resamples, chunk):
        draws = rng.integers(0, len(y), size=(min(chunk, resamples - start), len(y)))
        for measure, values in bootstrap_measures(y, p, threshold, draws).items():
            parts[measure].append(values)
    return {f"{m}_ci": _percentiles(np.concatenate(parts[m])) for m in MEASURES}


def risk_metrics_with_intervals(
    y: np.ndarray, p: np.ndarray, *, threshold: float, resamples: int, seed: int = 0
) -> dict[str, Any]:
    """``metrics.risk_metrics`` (scikit-learn's point values) with every measure's ``_ci`` from
    one bootstrap (``auroc_ci_low``/``_high`` kept: other code reads them), and each measure the
    split has too few events or non-events for set to None with its reason
    (``federation.core.estimable``)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    found: dict[str, Any] = risk_metrics(y, p, threshold=threshold, resamples=0, seed=seed)
    found |= metric_intervals(y, p, threshold=threshold, resamples=resamples, seed=seed)
    low, high = found["auroc_ci"] or (float("nan"), float("nan"))
    found["auroc_ci_low"], found["auroc_ci_high"] = low, high
    for measure in MEASURES:  # an interval around an undefined point says nothing
        if not np.isfinite(found[measure]):
            found[f"{measure}_ci"] = None
    events = int(y.sum())
    return withhold_too_few(found, events, len(y) - events)
