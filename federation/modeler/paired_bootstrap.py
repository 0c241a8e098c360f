"""The federation's benefit over a baseline with its uncertainty: a paired bootstrap.

Both models score the same test rows, so their AUROCs are correlated; two separate intervals
say little about the difference. Resampling the rows once and scoring both models on every
resample (the same draws) gives the difference's own percentile interval: the computation a
site makes for ``lhsfed compare`` (``client.comparison.paired_auroc_difference``), reused.
"""

from __future__ import annotations

import math

import numpy as np

from client.comparison import paired_auroc_difference


def auroc_difference_ci(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, resamples: int, seed: int = 0
) -> list[float] | None:
    """95 % percentile interval of AUROC(p_a) − AUROC(p_b) on resamples of the same rows;
    None with one class or no resamples."""
    y = np.asarray(y, dtype=int)
    if resamples <= 0 or len(np.unique(y)) < 2:
        return None
    _, low, high = paired_auroc_difference(y, p_b, p_a, resamples=resamples, seed=seed)
    return [low, high] if math.isfinite(low) and math.isfinite(high) else None
