"""The federation's benefit over a baseline with its uncertainty: a paired bootstrap.

Both models score the same test rows, so their AUROCs are correlated; two separate intervals
say little about the difference. Resampling the rows once and scoring both models on every
resample (the same draws) gives the difference's own percentile interval.
"""

from __future__ import annotations

import numpy as np

from federation.core.metrics import BOOTSTRAP_CHUNK_DRAWS, CI_LEVEL, bootstrap_aurocs


def auroc_difference_ci(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, resamples: int, seed: int = 0
) -> list[float] | None:
    """95 % percentile interval of AUROC(p_a) − AUROC(p_b) on resamples of the same rows;
    None with one class, no resamples or no resample holding both classes."""
    y = np.asarray(y)
    if resamples <= 0 or len(np.unique(y)) < 2:
        return None
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CHUNK_DRAWS // len(y))
    parts = []
    for start in range(0, resamples, chunk):
        draws = rng.integers(0, len(y), size=(min(chunk, resamples - start), len(y)))
        parts.append(bootstrap_aurocs(y, p_a, draws) - bootstrap_aurocs(y, p_b, draws))
    differences = np.concatenate(parts)
    differences = differences[~np.isnan(differences)]
    if not len(differences):
        return None
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return [float(low), float(high)]
