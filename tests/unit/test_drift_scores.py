"""Drift scores at a site: PSI, SMD and k-merging on arrays (client/drift.py)."""

from __future__ import annotations

import numpy as np
import pytest

from client.drift import EPSILON, feature_drift, merged_groups, numeric_smd, psi, share_smd
from client.drift_reference import bin_counts, feature_reference
from federation.core.dataspec import FeatureSpec

AGE = FeatureSpec("age", "numeric")
SMOKER = FeatureSpec("smoker", "categorical", levels=("never", "former", "current"))


def _direct_psi(now, ref):
    a, e = np.asarray(now, float) / np.sum(now), np.asarray(ref, float) / np.sum(ref)
    a, e = np.maximum(a, EPSILON), np.maximum(e, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def test_psi_over_unmerged_bins_equals_the_direct_numpy_formula():
    now, ref = np.array([30, 20, 25, 25]), np.array([10, 40, 25, 25])

    groups = merged_groups(now, ref, min_cell=5)

    assert groups == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert psi(now, ref, groups) == pytest.approx(_direct_psi(now, ref), rel=1e-12)


def test_bins_under_k_on_either_side_merge_with_a_neighbour_before_the_psi():
    now, ref = np.array([3, 12, 1, 20, 4]), np.array([12, 2, 15, 15, 20])

    groups = merged_groups(now, ref, min_cell=10)

    # (3, 12) -> now 3 < 10; + (12, 2) -> 15, 14: closes; (1, 15) short now; + (20, 15) closes;
    # (4, 20) is a short last group: it joins the one before.
    assert groups == [(0, 2), (2, 5)]
    merged_now, merged_ref = [15, 25], [14, 50]
    assert psi(now, ref, groups) == pytest.approx(_direct_psi(merged_now, merged_ref), rel=1e-12)
    for s, e in groups:
        assert now[s:e].sum() >= 10 and ref[s:e].sum() >= 10


def test_an_empty_share_is_floored_not_infinite():
    assert np.isfinite(psi(np.array([10, 0]), np.array([0, 10]), [(0, 1), (1, 2)]))


def test_smd_is_the_mean_difference_over_the_pooled_sd():
    rng = np.random.default_rng(0)
    ref, now = rng.normal(50, 10, 400), rng.normal(55, 12, 300)

    smd = numeric_smd(now.mean(), now.std(), ref.mean(), ref.std())

    assert smd == pytest.approx((now.mean() - ref.mean()) / np.sqrt((now.var() + ref.var()) / 2))
    assert numeric_smd(1.0, 0.0, 1.0, 0.0) is None


def test_share_smd_is_the_proportion_smd_of_the_level_that_moved_most():
    now, ref = np.array([50.0, 30.0, 20.0]), np.array([50.0, 45.0, 5.0])

    p, q = 0.2, 0.05
    assert share_smd(now, ref) == pytest.approx((p - q) / np.sqrt((p * (1 - p) + q * (1 - q)) / 2))


def _numeric(values):
    return np.asarray(values, dtype="float32").reshape(-1, 1)


def test_a_shifted_numeric_feature_scores_against_its_own_reference_bins():
    rng = np.random.default_rng(1)
    ref_x = _numeric(np.where(rng.random(500) < 0.1, np.nan, rng.normal(0, 1, 500)))
    now_x = _numeric(np.where(rng.random(400) < 0.3, np.nan, rng.normal(1, 1, 400)))
    ref = feature_reference(ref_x, AGE, min_cell=5)

    got = feature_drift(now_x, AGE, ref, min_cell=5)

    now_obs = now_x[~np.isnan(now_x[:, 0]), 0].astype("float64")
    counts = np.array(bin_counts(now_obs, ref["edges"]))
    groups = merged_groups(counts, np.array(ref["counts"]), min_cell=5)
    merged_now = [counts[s:e].sum() for s, e in groups]
    merged_ref = [sum(ref["counts"][s:e]) for s, e in groups]
    assert not got.withheld and len(ref["edges"]) == 9 and len(groups) < 10  # the shift empties low bins
    pooled = np.sqrt((now_obs.var() + ref["sd"] ** 2) / 2)
    assert got.smd == pytest.approx((now_obs.mean() - ref["mean"]) / pooled)
    assert got.missing_change == pytest.approx(np.isnan(now_x).mean() - ref["missing"] / 500)
    assert got.psi == pytest.approx(_direct_psi(merged_now, merged_ref), rel=1e-9)
    assert got.smd > 0.8 and got.psi > 0.25


def test_the_same_rows_score_no_drift():
    x = _numeric(np.random.default_rng(2).normal(0, 1, 300))

    got = feature_drift(x, AGE, feature_reference(x, AGE, min_cell=10), min_cell=10)

    assert (got.smd, got.missing_change, got.psi, got.withheld) == (0.0, 0.0, 0.0, False)


def test_a_feature_with_a_cell_under_k_now_or_in_the_reference_is_withheld():
    rng = np.random.default_rng(3)
    fine = _numeric(rng.normal(0, 1, 200))
    few_missing = _numeric(np.r_[rng.normal(0, 1, 197), [np.nan] * 3])  # 3 missing < k = 5

    assert feature_drift(few_missing, AGE, feature_reference(fine, AGE, min_cell=5), min_cell=5).withheld
    assert feature_drift(fine, AGE, feature_reference(few_missing, AGE, min_cell=5), min_cell=5).withheld
    assert not feature_drift(fine, AGE, feature_reference(fine, AGE, min_cell=5), min_cell=5).withheld


def _one_hot(levels, n_levels=3):
    x = np.zeros((len(levels), n_levels), dtype="float32")
    for i, level in enumerate(levels):
        x[i] = np.nan if level is None else np.eye(n_levels)[level]
    return x


def test_categorical_psi_runs_over_its_level_shares():
    ref_x = _one_hot([0] * 50 + [1] * 30 + [2] * 20)
    now_x = _one_hot([0] * 20 + [1] * 30 + [2] * 50 + [None] * 10)
    ref = feature_reference(ref_x, SMOKER, min_cell=5)

    got = feature_drift(now_x, SMOKER, ref, min_cell=5)

    assert ref["counts"] == [50, 30, 20, 0]  # never, former, current, other
    # 'other' (0 on both sides) joins 'current'
    assert got.psi == pytest.approx(_direct_psi([20, 30, 50], [50, 30, 20]), rel=1e-9)
    assert got.missing_change == pytest.approx(10 / 110)
    assert got.smd == pytest.approx(share_smd(np.array([20, 30, 50, 0.0]), np.array([50, 30, 20, 0.0])))
