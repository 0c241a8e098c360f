"""Decision curves and quantile calibration from released score histograms (issue N.2, N.3).

Net benefit at threshold t is TP/n − FP/n · t/(1 − t) (Vickers & Elkin 2006). A site's
released histograms count positives and negatives per risk bin [b/100, (b+1)/100), so the
patients called positive at t = j/100 are exactly the bins ≥ j: the counts at every
threshold of the 1/100 grid come from the histograms, per site and pooled (their sum), and no
patient's score is needed. Treat-all is prevalence − (1 − prevalence) · t/(1 − t), each curve
from its own patients' prevalence (a site's from its own, never the pooled one); treat-none 0.
"""

from __future__ import annotations

import numpy as np

from federation.core.metrics import HIST_BINS

GRID = np.arange(HIST_BINS) / HIST_BINS  # 0.00, 0.01, ..., 0.99 (t = 1 has no net benefit)
# The figure's thresholds stop where fewer than this share of the patients would be treated:
# past it every curve is ≈ 0 and treat-all falls away, so the axis would be mostly empty.
TREATED_FLOOR = 0.01
LIMIT_STEP = 0.05  # the axis limit rounded up to this


def grid_index(threshold: float) -> int:
    """The grid point a threshold falls on (a threshold between two is rounded to the nearest)."""
    return int(min(HIST_BINS - 1, max(0, round(float(threshold) * HIST_BINS))))


def counts_at_grid(pos, neg) -> tuple[np.ndarray, np.ndarray]:
    """(TP, FP) at every grid threshold: the positives / negatives in bins ≥ that threshold."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    return np.cumsum(pos[::-1])[::-1], np.cumsum(neg[::-1])[::-1]


def net_benefit(pos, neg) -> dict[str, list[float]]:
    """Model, treat-all and treat-none net benefit on :data:`GRID` from class histograms."""
    tp, fp = counts_at_grid(pos, neg)
    n_pos, n = tp[0], tp[0] + fp[0]
    odds = GRID / (1 - GRID)
    prevalence = n_pos / n if n else float("nan")
    return {
        "threshold": GRID.tolist(),
        "model": (tp / n - fp / n * odds).tolist(),
        "treat_all": (prevalence - (1 - prevalence) * odds).tolist(),
        "treat_none": [0.0] * len(GRID),
        "treated": ((tp + fp) / n if n else np.full(len(GRID), np.nan)).tolist(),
    }


def threshold_limit(curve: dict) -> float:
    """The highest threshold worth drawing for ``curve`` (the pooled one): the first grid point
    at which fewer than :data:`TREATED_FLOOR` of its patients would be treated, rounded up to
    :data:`LIMIT_STEP` (at least 0.1; 1 for a curve from before ``treated`` was recorded)."""
    treated = np.asarray(curve.get("treated") or [], dtype=float)
    below = np.flatnonzero(treated < TREATED_FLOOR)
    if not len(below):
        return 1.0
    limit = np.ceil(GRID[below[0]] / LIMIT_STEP - 1e-9) * LIMIT_STEP
    return float(min(1.0, max(0.1, limit)))


def rates_at(pos, neg, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity at a grid threshold, from class histograms."""
    tp, fp = counts_at_grid(pos, neg)
    j = grid_index(threshold)
    sens = tp[j] / tp[0] if tp[0] else float("nan")
    spec = 1 - fp[j] / fp[0] if fp[0] else float("nan")
    return float(sens), float(spec)


def wilson(events: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson interval of each observed rate (statsmodels: the coordinator's and the
    modeler's extras; imported here so that this shared module stays importable at a site)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(events, np.maximum(n, 1), alpha=0.05, method="wilson")
    return np.asarray(low), np.asarray(high)


def quantile_calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Equal-count bins of risk: mean risk, observed rate and its Wilson interval per bin."""
    order = np.argsort(p, kind="stable")
    parts = [part for part in np.array_split(order, min(bins, len(p))) if len(part)]
    n = np.array([len(part) for part in parts], dtype=float)
    events = np.array([y[part].sum() for part in parts], dtype=float)
    low, high = wilson(events, n)
    return {
        "predicted": [float(p[part].mean()) for part in parts],
        "observed": (events / n).tolist(),
        "low": low.tolist(),
        "high": high.tolist(),
        "n": n.tolist(),
    }


def quantile_calibration_from_histograms(pos, neg, bins: int = 10) -> dict[str, list[float]]:
    """Equal-count bins from class histograms (deployment): whole risk bins are merged until
    each holds about n/bins patients; a bin's risk is its centre (the rows never left)."""
    # DP releases may hold negative counts: equal-count bins need them clipped at 0
    pos, neg = np.maximum(np.asarray(pos, dtype=float), 0), np.maximum(np.asarray(neg, dtype=float), 0)
    total, centres = pos + neg, (np.arange(HIST_BINS) + 0.5) / HIST_BINS
    cuts = np.searchsorted(np.cumsum(total), np.arange(1, bins) * total.sum() / bins)
    groups = [g for g in np.split(np.arange(HIST_BINS), np.unique(cuts + 1)) if total[g].sum() > 0]
    n = np.array([total[g].sum() for g in groups])
    events = np.array([pos[g].sum() for g in groups])
    low, high = wilson(np.round(events), np.round(n))
    return {
        "predicted": [float((centres[g] * total[g]).sum() / total[g].sum()) for g in groups],
        "observed": (events / n).tolist(),
        "low": low.tolist(),
        "high": high.tolist(),
        "n": n.tolist(),
    }
