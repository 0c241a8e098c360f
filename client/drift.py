"""Drift scores of a site's current rows against its own reference of a run (site side).

Per feature: the standardized mean difference (now - reference, over the pooled SD), the
change in missing rate (now - reference) and the population stability index over the
reference's bins. Only these three numbers per feature leave the site, under the same
small-cell rule as every other release (:mod:`client.releases`):

- a feature whose current cells (observed, missing, levels) or whose reference cells failed
  the site's minimum cell size k is withheld: no score at all;
- before the PSI, neighbouring bins are merged left to right until every group holds at
  least k current AND k reference rows (as ``score_groups`` merges score bins), so no score
  depends on a bin of fewer than k patients.

PSI = sum over groups of (a - e) * ln(a / e), a and e the current and reference shares of
the observed rows. A share is floored at ``EPSILON`` (1e-4) before the logarithm, so an
empty side (possible only when k = 1 and nothing is observed) gives a large finite PSI, not
infinity. For binary and categorical features the SMD is the level-share SMD
(p_now - p_ref) / sqrt((p_now(1-p_now) + p_ref(1-p_ref)) / 2) of the level that moved most
(signed), which for a binary feature is the usual SMD of a proportion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from client.drift_reference import bin_counts, level_counts
from client.releases import feature_column_slices, feature_releasable
from federation.core import wire
from federation.core.dataspec import DatasetSpec, FeatureSpec

EPSILON = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's scores (all 0 when withheld)."""

    smd: float = 0.0
    missing_change: float = 0.0
    psi: float = 0.0
    withheld: bool = True


def merged_groups(now: np.ndarray, ref: np.ndarray, *, min_cell: int) -> list[tuple[int, int]]:
    """Bins merged left to right into [start, stop) groups holding >= ``min_cell`` rows on
    both sides; a short last group joins the one before it (every bin is covered)."""
    groups, start, held_now, held_ref = [], 0, 0, 0
    for b, (n, r) in enumerate(zip(now, ref)):
        held_now, held_ref = held_now + n, held_ref + r
        if held_now >= min_cell and held_ref >= min_cell:
            groups.append((start, b + 1))
            start, held_now, held_ref = b + 1, 0, 0
    if start < len(now):
        groups[-1:] = [(groups[-1][0] if groups else 0, len(now))]
    return groups


def psi(now: np.ndarray, ref: np.ndarray, groups: list[tuple[int, int]]) -> float:
    """Population stability index of two count vectors over ``groups`` of their bins."""
    a = np.array([now[s:e].sum() for s, e in groups], dtype="float64")
    e = np.array([ref[s:t].sum() for s, t in groups], dtype="float64")
    a = np.maximum(a / max(a.sum(), 1.0), EPSILON)
    e = np.maximum(e / max(e.sum(), 1.0), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_smd(mean_now: float, sd_now: float, mean_ref: float, sd_ref: float) -> float | None:
    """(now - ref) / pooled SD; None when both SDs are 0 (nothing to standardize by)."""
    pooled = math.sqrt((sd_now**2 + sd_ref**2) / 2)
    return None if pooled == 0 else (mean_now - mean_ref) / pooled


def share_smd(now: np.ndarray, ref: np.ndarray) -> float:
    """The signed level-share SMD of the level whose share moved most."""
    p = now / max(now.sum(), 1)
    q = ref / max(ref.sum(), 1)
    spread = np.sqrt((p * (1 - p) + q * (1 - q)) / 2)
    d = np.divide(p - q, spread, out=np.zeros_like(p), where=spread > 0)
    return float(d[np.argmax(np.abs(d))]) if len(d) else 0.0


def feature_drift(x: np.ndarray, feat: FeatureSpec, ref: dict | None, *, min_cell: int) -> FeatureDrift:
    """Scores of one feature (x: its current encoded columns) against its reference."""
    if not ref or ref.get("type") != feat.type or not ref.get("releasable"):
        return FeatureDrift()
    if not len(x) or not feature_releasable(x, feat, min_cell=min_cell):
        return FeatureDrift()
    observed = ~np.isnan(x[:, 0])
    missing_change = float((~observed).mean() - ref["missing"] / ref["rows"])
    ref_counts = np.asarray(ref["counts"], dtype="float64")
    if feat.type == "numeric":
        values = x[observed, 0].astype("float64")
        now_counts = np.asarray(bin_counts(values, ref["edges"]), dtype="float64")
        smd = numeric_smd(float(values.mean()), float(values.std()), ref["mean"], ref["sd"])
        if smd is None:
            return FeatureDrift()
    else:
        now_counts = np.asarray(level_counts(x, feat), dtype="float64")
        if len(now_counts) != len(ref_counts):
            return FeatureDrift()
        smd = share_smd(now_counts, ref_counts)
    groups = merged_groups(now_counts, ref_counts, min_cell=min_cell)
    return FeatureDrift(float(smd), missing_change, psi(now_counts, ref_counts, groups), withheld=False)


def drift_scores(x: np.ndarray, spec: DatasetSpec, reference: dict[str, dict], *, min_cell: int) -> dict:
    """The drift reply's metrics: lists aligned with the spec's features, and the withheld mask."""
    scores = [
        feature_drift(x[:, cols], feat, reference.get(feat.name), min_cell=min_cell)
        for feat, cols in feature_column_slices(spec)
    ]
    return {
        wire.DRIFT_SMD: [s.smd for s in scores],
        wire.DRIFT_MISSING_CHANGE: [s.missing_change for s in scores],
        wire.DRIFT_PSI: [s.psi for s in scores],
        wire.DRIFT_WITHHELD: [int(s.withheld) for s in scores],
    }
