"""Drift scores under DP: one Gaussian release of per-feature counts, now and in the reference.

The exact scores (:mod:`client.drift`) are functions of the site's current rows AND of its
reference rows (taken when it trained the run): both are patients. Under DP the site releases,
for every feature with a reference, the counts of its current rows in each reference bin (or
level) and missing, and the same counts of the reference; a patient adds 1 to one cell per
feature on each side (the current file may hold the reference's patients), so the L2
sensitivity is √(2 · features). The partition is public: the spec's levels, and for a numeric
feature equal-width bins of the spec's [min, max] (never the reference's deciles: one patient
would move those edges and every count with them). SMD, missing-rate change and PSI are then
post-processing of the noisy counts (numeric SMD over the bins' midpoints).

What it costs is the site's ``query-epsilon`` per drift query, charged to its cap like every
release (:mod:`client.dp_release`); with many features and few rows the scores are noisy, and
the reply says how noisy (``release-noise-std``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from client.drift import EPSILON, FeatureDrift, share_smd
from client.drift_reference import bin_counts, level_counts, range_edges
from client.releases import feature_column_slices
from federation.core import wire
from federation.core.dataspec import DatasetSpec, FeatureSpec


@dataclass(frozen=True)
class FeatureCells:
    """One feature's cells on both sides (last cell: missing) and, numeric, bin values."""

    index: int  # the feature's position in the spec
    now: np.ndarray
    ref: np.ndarray
    values: np.ndarray | None  # representative value of each observed bin (numeric only)


def _bin_values(feat: FeatureSpec, edges: list[float]) -> np.ndarray:
    """A value per bin of the spec's range: the bins' midpoints (public, as the edges are)."""
    bounds = np.concatenate([[feat.min], np.asarray(edges, dtype="float64"), [feat.max]])
    return (bounds[:-1] + bounds[1:]) / 2


def _cells(x: np.ndarray, feat: FeatureSpec, ref: dict | None, index: int) -> FeatureCells | None:
    """A feature's cells now and then over a partition no patient sets: the spec's levels, or
    for a numeric feature bins of the spec's range (client.drift_reference.range_edges); a
    numeric feature without a spec range (or a reference taken before) is withheld."""
    if not ref or ref.get("type") != feat.type or "counts" not in ref:
        return None
    observed = ~np.isnan(x[:, 0])
    if feat.type == "numeric":
        edges = range_edges(feat)
        if edges is None or ref.get("range_edges") != edges:
            return None
        now = bin_counts(x[observed, 0].astype("float64"), edges)
        ref_cells = np.asarray([*ref["range_counts"], ref["missing"]], dtype="float64")
        values = _bin_values(feat, edges)
    else:
        ref_cells = np.asarray([*ref["counts"], ref["missing"]], dtype="float64")
        now, values = level_counts(x, feat), None
    now_cells = np.asarray([*now, int((~observed).sum())], dtype="float64")
    if len(now_cells) != len(ref_cells):
        return None
    return FeatureCells(index, now_cells, ref_cells, values)


def drift_cells(x: np.ndarray, spec: DatasetSpec, reference: dict[str, dict]) -> list[FeatureCells]:
    """Every feature that has a usable reference, with its exact cells (never sent as such)."""
    found = (
        _cells(x[:, cols], feat, reference.get(feat.name), i)
        for i, (feat, cols) in enumerate(feature_column_slices(spec))
    )
    return [c for c in found if c is not None]


def release_vector(cells: list[FeatureCells]) -> np.ndarray:
    return np.concatenate([np.concatenate([c.now, c.ref]) for c in cells]) if cells else np.zeros(0)


def sensitivity(cells: list[FeatureCells]) -> float:
    return float(np.sqrt(2 * len(cells))) if cells else 1.0


def _psi(now: np.ndarray, ref: np.ndarray) -> float:
    a = np.maximum(now / max(now.sum(), 1.0), EPSILON)
    e = np.maximum(ref / max(ref.sum(), 1.0), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _numeric_smd(now: np.ndarray, ref: np.ndarray, values: np.ndarray) -> float:
    def moments(counts):
        total = max(counts.sum(), 1.0)
        mean = float((counts * values).sum() / total)
        return mean, float(np.sqrt(max((counts * (values - mean) ** 2).sum() / total, 0.0)))

    (m1, s1), (m0, s0) = moments(now), moments(ref)
    pooled = np.sqrt((s1**2 + s0**2) / 2)
    return float((m1 - m0) / pooled) if pooled > 0 else 0.0


def _feature_scores(cell: FeatureCells, noisy: np.ndarray) -> FeatureDrift:
    size = len(cell.now)
    now, ref = np.maximum(noisy[:size], 0), np.maximum(noisy[size:], 0)
    observed_now, observed_ref = now[:-1], ref[:-1]
    missing_change = float(now[-1] / max(now.sum(), 1.0) - ref[-1] / max(ref.sum(), 1.0))
    if cell.values is not None:
        smd = _numeric_smd(observed_now, observed_ref, cell.values)
    else:
        smd = share_smd(observed_now, observed_ref)
    return FeatureDrift(smd, missing_change, _psi(observed_now, observed_ref), withheld=False)


def dp_drift_scores(spec: DatasetSpec, cells: list[FeatureCells], noisy: np.ndarray) -> dict:
    """The drift reply from the noisy release (post-processing); features without a reference
    are withheld."""
    scores = [FeatureDrift()] * len(spec.features)
    start = 0
    for cell in cells:
        size = 2 * len(cell.now)
        scores[cell.index] = _feature_scores(cell, noisy[start : start + size])
        start += size
    return {
        wire.DRIFT_SMD: [s.smd for s in scores],
        wire.DRIFT_MISSING_CHANGE: [s.missing_change for s in scores],
        wire.DRIFT_PSI: [s.psi for s in scores],
        wire.DRIFT_WITHHELD: [int(s.withheld) for s in scores],
    }
