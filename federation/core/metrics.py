"""Metrics of a risk model, at a site, at the modeler and pooled across sites (scikit-learn).

Pure functions over labels ``y`` and predicted risks ``p``: discrimination, calibration and a
threshold (:func:`risk_metrics`, one pass per scored split; every value a plain float so it goes
straight into ``evaluation.json``, a metric undefined on the data being NaN, written as null).
Pooled metrics across sites are computed from per-site score histograms and counts, so the
server never sees a patient's score: only how many positives and negatives fell in each bin.
A site may release merged bins as fractional counts (``client.releases``); pooling is the same.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    roc_auc_score,
)

from federation.core import wire

HIST_BINS = 100
ECE_BINS = 10
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CHUNK_DRAWS = 1_000_000
CI_LEVEL = 0.95
_EPS = 1e-7
# What a site adds to its evaluate reply (so a deployment gets them without any row leaving)
SITE_WIRE_KEYS = {
    "auroc_ci_low": wire.AUROC_CI_LOW,
    "auroc_ci_high": wire.AUROC_CI_HIGH,
    "ece": wire.ECE,
    "calibration_slope": wire.CALIBRATION_SLOPE,
    "calibration_intercept": wire.CALIBRATION_INTERCEPT,
    "threshold": wire.THRESHOLD,
    "sensitivity": wire.SENSITIVITY,
    "specificity": wire.SPECIFICITY,
}
METRIC_KEYS = (
    "n",
    "n_positive",
    "auroc",
    "auroc_ci_low",
    "auroc_ci_high",
    "auprc",
    "brier",
    "ece",
    "calibration_slope",
    "calibration_intercept",
    "threshold",
    "sensitivity",
    "specificity",
)


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def bootstrap_aurocs(y: np.ndarray, p: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """AUROC of each resample (a row of ``draws`` indexes rows of ``y``, ``p``); NaN if one-class.

    The Mann-Whitney statistic with ties counting half (scikit-learn's ``roc_auc_score``;
    tested) from how often each resample draws each tie group of ``p`` (one sort in all):
    ranking every resample took a site ~2 s per evaluation at 10k rows (benchmark (c)).
    """
    resamples = draws.shape[0]
    group_of = np.unique(p, return_inverse=True)[1]  # tie groups, in increasing risk
    n_groups = int(group_of.max()) + 1
    cell = (group_of[draws] + n_groups * np.arange(resamples)[:, None]).ravel()
    drawn = np.bincount(cell, minlength=resamples * n_groups).reshape(resamples, n_groups)
    pos = np.bincount(cell, weights=y[draws].ravel(), minlength=resamples * n_groups).reshape(
        resamples, n_groups
    )
    neg = drawn - pos
    below = np.cumsum(neg, axis=1) - neg  # negatives scored lower than each tie group
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def auroc_with_ci(
    y: np.ndarray, p: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """AUROC and its percentile-bootstrap 95% CI (resamples drawing one class are skipped)."""
    if not _two_classes(y):
        return float("nan"), float("nan"), float("nan")
    if resamples == 0:  # the point estimate only
        return float(roc_auc_score(y, p)), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # In chunks of ~1M draws: memory stays flat with a site's size (the stream is the same).
    chunk = max(1, BOOTSTRAP_CHUNK_DRAWS // len(y))
    boot = np.concatenate(
        [
            bootstrap_aurocs(y, p, rng.integers(0, len(y), size=(min(chunk, resamples - start), len(y))))
            for start in range(0, resamples, chunk)
        ]
    )
    boot = boot[~np.isnan(boot)]
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return float(roc_auc_score(y, p)), float(low), float(high)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_b (n_b / n) · |mean risk − observed rate| over equal-width risk bins."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    risk = np.bincount(index, weights=p, minlength=bins)
    events = np.bincount(index, weights=y, minlength=bins)
    used = counts > 0
    gaps = np.abs(risk[used] - events[used]) / counts[used]
    return float(np.sum(counts[used] / len(y) * gaps))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Logistic recalibration: fit logit P(y=1) = a + b · logit(p); returns (b, a).

    A perfectly calibrated model has slope 1 and intercept 0; slope < 1 means risks are
    too extreme (overfitting), intercept > 0 means risks are too low on average.
    """
    if not _two_classes(y):
        return float("nan"), float("nan")
    q = np.clip(p, _EPS, 1 - _EPS)
    logit = np.log(q / (1 - q))[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separable toy data: the unpenalised fit may not converge
        fit = LogisticRegression(penalty=None, max_iter=1000).fit(logit, y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def confusion_cells(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(TN, FP, FN, TP) when risk >= threshold is called positive."""
    tn, fp, fn, tp = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1]).ravel()
    return int(tn), int(fp), int(fn), int(tp)


def sensitivity_specificity(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """True-positive and true-negative rates when risk >= threshold is called positive."""
    tn, fp, fn, tp = confusion_cells(y, p, threshold)
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    return float(sens), float(spec)


def risk_metrics(
    y: np.ndarray,
    p: np.ndarray,
    *,
    threshold: float = 0.5,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of ``evaluation.json`` for one set of predictions."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    auroc, low, high = auroc_with_ci(y, p, resamples=resamples, seed=seed)
    slope, intercept = calibration_slope_intercept(y, p)
    sens, spec = sensitivity_specificity(y, p, threshold)
    return {
        "n": int(len(y)),
        "n_positive": int(y.sum()),
        "auroc": auroc,
        "auroc_ci_low": low,
        "auroc_ci_high": high,
        "auprc": float(average_precision_score(y, p)) if _two_classes(y) else float("nan"),
        "brier": float(brier_score_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "threshold": float(threshold),
        "sensitivity": sens,
        "specificity": spec,
    }


def site_wire_metrics(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float = 0.5,
    *,
    min_cell: int,
    with_ci: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """A site's metrics of one split under their wire keys, for ``ClientApp.evaluate``.

    One :func:`risk_metrics` pass gives AUROC, AUPRC, Brier and ``SITE_WIRE_KEYS``; the log
    loss is the only extra. ``with_ci=False`` leaves out the bootstrap AUROC CI: a site asked
    every round spent three times its training time on it (benchmark (b)); the server asks for
    it in the last round. ``seed`` draws the bootstrap resamples (a site passes a secret one:
    known resamples would let a coordinator relate the CI bounds to individual test rows).

    Sensitivity and specificity are left out when any confusion cell at the threshold (TP,
    FN, FP, TN) holds fewer than ``min_cell`` rows: times the released class counts they ARE
    those cells, so a model scoring risk≈1 for one patient's values only would otherwise
    count how many such patients the site has.
    """
    metrics = risk_metrics(
        y, p, threshold=threshold, resamples=BOOTSTRAP_RESAMPLES if with_ci else 0, seed=seed
    )
    clipped = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    releasable = min(confusion_cells(np.asarray(y, dtype=int), np.asarray(p), threshold)) >= min_cell
    return {
        wire.AUROC: metrics["auroc"],
        wire.AUPRC: metrics["auprc"],
        wire.BRIER: metrics["brier"],
        wire.EVAL_LOSS: float(log_loss(np.asarray(y, dtype=int), clipped, labels=[0, 1])),
        **{
            key: metrics[name]
            for name, key in SITE_WIRE_KEYS.items()
            if (with_ci or name not in ("auroc_ci_low", "auroc_ci_high"))
            and (releasable or name not in ("sensitivity", "specificity"))
        },
    }


def score_histograms(y: np.ndarray, p: np.ndarray) -> tuple[list[int], list[int]]:
    """Counts of positives and negatives per risk bin of width 1/HIST_BINS."""
    bins = np.minimum((np.asarray(p) * HIST_BINS).astype(int), HIST_BINS - 1)
    y = np.asarray(y, dtype=int)
    pos = np.bincount(bins[y == 1], minlength=HIST_BINS)
    neg = np.bincount(bins[y == 0], minlength=HIST_BINS)
    return pos.tolist(), neg.tolist()


def pooled_from_histograms(pos: np.ndarray, neg: np.ndarray) -> dict[str, float]:
    """AUROC and AUPRC of all sites' predictions together, from summed histograms.

    Rows in one bin share the bin's centre as score, so ties inside a bin count as half:
    the error against exact pooled AUROC is bounded by the within-bin pairs (tested). Counts
    may be fractional (a group of bins spread evenly): the error is then bounded by the pairs
    whose released bin ranges overlap (tests/unit/test_metrics.py ``overlap_bound``). Counts
    may be negative (the sum of sites' DP releases, federation.core.histogram_metrics): AUROC
    is the Mann-Whitney sum over them as they are (unbiased under zero-mean noise; equal to
    scikit-learn's weighted AUROC for non-negative counts), AUPRC takes them clipped at 0.
    """
    from federation.core.histogram_metrics import auprc_of, auroc_of

    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    if pos.sum() <= 0 or neg.sum() <= 0:
        return {"auroc": float("nan"), "auprc": float("nan")}
    return {"auroc": auroc_of(pos, neg), "auprc": auprc_of(np.maximum(pos, 0), np.maximum(neg, 0))}
