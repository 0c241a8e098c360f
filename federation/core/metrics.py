"""Discrimination and calibration metrics (scikit-learn), per site and pooled.

Pooled metrics across sites are computed from per-site score histograms and counts, so the
server never sees a patient's score: only how many positives and negatives fell in each bin.
A site may release merged bins as fractional counts (``client.releases``); pooling is the same.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

HIST_BINS = 100


def _safe(metric, y: np.ndarray, p: np.ndarray, **kw) -> float:
    """NaN when a metric is undefined (e.g. AUROC on a one-class test split)."""
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(metric(y, p, **kw))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC, Brier and log loss of predicted risks ``p`` for labels ``y``."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return {
        "auroc": _safe(roc_auc_score, y, p),
        "auprc": _safe(average_precision_score, y, p),
        "brier": float(brier_score_loss(y, p)),
        "loss": float(log_loss(y, p, labels=[0, 1])),
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
    whose released bin ranges overlap (tests/unit/test_metrics.py ``overlap_bound``).
    """
    centres = (np.arange(HIST_BINS) + 0.5) / HIST_BINS
    scores = np.concatenate([centres, centres])
    labels = np.concatenate([np.ones(HIST_BINS), np.zeros(HIST_BINS)])
    weights = np.concatenate([pos, neg]).astype(float)
    keep = weights > 0
    if pos.sum() == 0 or neg.sum() == 0:
        return {"auroc": float("nan"), "auprc": float("nan")}
    return {
        "auroc": float(roc_auc_score(labels[keep], scores[keep], sample_weight=weights[keep])),
        "auprc": float(
            average_precision_score(labels[keep], scores[keep], sample_weight=weights[keep])
        ),
    }
