"""What a site releases outside ε, each bounded by a minimum cell size k (issue H.7).

Feature statistics, evaluation metrics and score histograms leave the site without DP noise.
The coordinator is not trusted, so each is released only if every group of patients it can
tell apart holds at least ``min_cell`` patients: the small-cell rule of statistical
disclosure control (counts under k are suppressed, and so are the cells that would give
them back by subtraction). Pure functions; the ClientApp only packs what they return.
"""

from __future__ import annotations

import numpy as np

from federation.core import wire
from federation.core.dataspec import DatasetSpec, FeatureSpec
from federation.core.errors import ConfigError, DataError
from federation.core.feature_stats import feature_moments
from federation.core.metrics import HIST_BINS, score_histograms

DEFAULT_MIN_CELL = 10
DEFAULT_MIN_TEST_ROWS = 50


def _check_threshold(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(
            f"site setting {name} must be a whole number >= 1 (got {value!r}); "
            "set it in the site's node config or leave it at its default"
        )
    return int(value)


def feature_column_slices(spec: DatasetSpec) -> list[tuple[FeatureSpec, slice]]:
    """Each feature of the spec with the slice of encoded columns it becomes."""
    slices, start = [], 0
    for feat in spec.features:
        width = len(feat.encoded_names())
        slices.append((feat, slice(start, start + width)))
        start += width
    return slices


def feature_cells(x: np.ndarray, feat: FeatureSpec) -> list[int | None]:
    """Sizes of every group of rows one feature's released moments would count.

    Observed and missing rows (the site's row count is on the wire, so missing = rows -
    count); for indicators (binary, one-hot) the rows with 1 and with 0 in each column, and
    the rows with neither value in the feature (a categorical's dropped first level or unknown
    levels, a binary's stray values), which count, sum and sum of squares give back.
    Empty cells (None) are exempt, except observed, 1 and 0: 'nobody' is a disclosure too.
    """
    observed = ~np.isnan(x[:, 0])
    n_obs = int(observed.sum())
    cells = [n_obs, _zero_or(len(x) - n_obs)]
    if feat.type == "numeric":
        cells += _few_valued_cells(x[observed, 0])
    if feat.type in ("binary", "categorical"):
        ones, zeros = (x[observed] == 1).sum(0), (x[observed] == 0).sum(0)
        cells += [*ones.tolist(), *zeros.tolist()]
        other = n_obs - int(ones.sum()) - (int(zeros.sum()) if feat.type == "binary" else 0)
        cells.append(_zero_or(other))
    return cells


def _few_valued_cells(values: np.ndarray) -> list[int]:
    """Counts of each value of a numeric column with at most 3 distinct values.

    Count, sum and sum of squares solve up to three known values' counts exactly (a coded
    ordinal such as ``ca`` is such a column at a small site); one value alone is every
    patient's value, so it gets an empty second cell, which fails the minimum.
    """
    distinct, counts = np.unique(values, return_counts=True)
    if not 0 < len(distinct) <= 3:
        return []
    return counts.tolist() + [0] * (len(distinct) == 1)


def _zero_or(count: int) -> int | None:
    """An empty cell reveals nothing: None marks it as exempt from the minimum."""
    return None if count == 0 else count


def feature_releasable(x: np.ndarray, feat: FeatureSpec, *, min_cell: int) -> bool:
    """True when every cell of :func:`feature_cells` holds at least ``min_cell`` rows."""
    return all(c is None or c >= min_cell for c in feature_cells(x, feat))


def released_feature_statistics(
    x_train: np.ndarray, spec: DatasetSpec, *, min_cell: int = DEFAULT_MIN_CELL
) -> dict[str, list[float]]:
    """Per-column count, sum and sum of squares, all 0 for a feature with a cell under k.

    A categorical is released or withheld as a whole: withholding one rare level while
    releasing the others would give its count back as count - Σ (other levels' sums).
    """
    min_cell = _check_threshold("min_cell", min_cell)
    names = spec.encoded_feature_names()
    if x_train.ndim != 2 or x_train.shape[1] != len(names):
        raise DataError(
            f"training matrix has {x_train.shape[-1]} columns, the dataset spec "
            f"{spec.name!r} encodes {len(names)}; load the site with the run's spec"
        )
    keep = np.zeros(len(names), dtype=bool)
    for feat, cols in feature_column_slices(spec):
        keep[cols] = feature_releasable(x_train[:, cols], feat, min_cell=min_cell)
    count, total, sumsq = feature_moments(x_train, keep)
    return {
        wire.STATS_COUNT: count.tolist(),
        wire.STATS_SUM: total.tolist(),
        wire.STATS_SUMSQ: sumsq.tolist(),
    }


def evaluation_refusal(
    y_test: np.ndarray,
    *,
    min_rows: int = DEFAULT_MIN_TEST_ROWS,
    min_cell: int = DEFAULT_MIN_CELL,
    split: str = "test",
    action: str = "evaluation",
) -> str | None:
    """Why this split is not used (None: it may be); ``split`` and ``action`` name the split
    and what it was for (a recalibration refused on its validation rows says so, issue T.3).

    The reason names the rule and its numbers only, never the split's own counts: a refusal
    saying "3 positives" would release the small cell it protects.
    """
    min_rows = _check_threshold("min_rows", min_rows)
    min_cell = _check_threshold("min_cell", min_cell)
    y = np.asarray(y_test).astype(int)
    if len(y) < min_rows:
        return (
            f"{action} refused (too few {split} rows): this site uses only {split} splits "
            f"of at least {min_rows} rows"
        )
    if np.bincount(y, minlength=2)[:2].min() < min_cell:
        return (
            f"{action} refused (too few of one class): this site uses only {split} splits "
            f"with at least {min_cell} rows of each class"
        )
    return None


def score_groups(counts: np.ndarray, *, min_cell: int) -> list[tuple[int, int]]:
    """Bins merged left to right into [start, stop) groups of >= ``min_cell`` patients each.

    ``counts`` is one histogram, or several as rows (the split's and each subgroup level's):
    then the groups are one partition in which every group holds >= ``min_cell`` patients of
    every row, so no row's group count can be had by subtracting the others' (review A4).
    The groups cover every bin (none left empty at the ends, so no group edge marks the
    lowest or highest score); a short last group joins the one before it.
    """
    table = np.atleast_2d(np.asarray(counts))
    groups, start, held = [], 0, np.zeros(len(table))
    for b in range(table.shape[1]):
        held += table[:, b]
        if held.min() >= min_cell:
            groups.append((start, b + 1))
            start, held = b + 1, np.zeros(len(table))
    if start < table.shape[1]:
        groups[-1:] = [(groups[-1][0] if groups else 0, table.shape[1])]
    return groups


def released_score_histograms(
    y: np.ndarray,
    p: np.ndarray,
    *,
    min_cell: int = DEFAULT_MIN_CELL,
    groups: list[tuple[int, int]] | None = None,
) -> tuple[list[float], list[float]]:
    """Score histograms (HIST_BINS bins per class) in which no group of bins holds < k patients.

    Each group's positives and negatives are spread evenly over its bins (fractional counts):
    the wire format and the server's pooled AUROC stay as they are. With k = 1 every
    non-empty bin already holds >= k patients, so the histograms are the exact ones.
    ``groups``: a partition shared with other released histograms of the same rows
    (:func:`score_groups` over all of them), used instead of this one's own.
    """
    min_cell = _check_threshold("min_cell", min_cell)
    pos, neg = (np.asarray(h, dtype="float64") for h in score_histograms(y, p))
    if min_cell == 1 and groups is None:
        return pos.tolist(), neg.tolist()
    out_pos, out_neg = np.zeros(HIST_BINS), np.zeros(HIST_BINS)
    for start, stop in groups if groups is not None else score_groups(pos + neg, min_cell=min_cell):
        out_pos[start:stop] = pos[start:stop].sum() / (stop - start)
        out_neg[start:stop] = neg[start:stop].sum() / (stop - start)
    return out_pos.tolist(), out_neg.tolist()
