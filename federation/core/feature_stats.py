"""Per-feature statistics of observed values: one computation for a site and the modeler.

A site releases (count, sum, sum of squares) of its training columns; the server combines
the sites' moments into the pooled mean and standard deviation; the modeler's baselines
scale pooled rows with the same two functions, so a baseline and the federation standardize
alike. NaN is a missing value and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

Moments = tuple[np.ndarray, np.ndarray, np.ndarray]  # count, sum, sum of squares per column
Prior = tuple[np.ndarray, np.ndarray]  # mean, std for columns no part counted


def feature_moments(x: np.ndarray, keep: np.ndarray | None = None) -> Moments:
    """Count, sum and sum of squares (float64) of each column's observed values.

    ``keep`` (one flag per column) zeroes the columns it does not keep: a site withholding
    a feature releases count 0 for it.
    """
    observed = ~np.isnan(x) if keep is None else ~np.isnan(x) & keep
    values = np.where(observed, x, 0.0).astype("float64")
    return observed.sum(0).astype("float64"), values.sum(0), (values**2).sum(0)


def combine_statistics(
    parts: Iterable[Moments], *, prior: Prior | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled mean and (population) standard deviation from per-part moments.

    Columns with count 0 in every part (no data, or withheld) take ``prior`` (default 0, 1).
    """
    counts, sums, sumsqs = (np.sum(np.asarray(x, dtype="float64"), axis=0) for x in zip(*parts))
    safe = np.maximum(counts, 1.0)
    mean = sums / safe
    var = np.maximum(sumsqs / safe - mean**2, 0.0)
    prior_mean, prior_std = prior if prior is not None else (0.0, 1.0)
    return np.where(counts > 0, mean, prior_mean), np.where(counts > 0, np.sqrt(var), prior_std)


def feature_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of observed values per column (as federated standardization)."""
    return combine_statistics([feature_moments(x)])
