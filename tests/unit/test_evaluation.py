"""Modeler metrics (federation.core.metrics) against hand computations and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from federation.core.metrics import (
    auroc_with_ci,
    bootstrap_aurocs,
    calibration_slope_intercept,
    expected_calibration_error,
    risk_metrics,
    sensitivity_specificity,
)


def _calibrated_sample(n: int = 4000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return (rng.uniform(size=n) < p).astype(int), p


def test_auroc_matches_sklearn_and_ci_brackets_it():
    y, p = _calibrated_sample(400)

    auroc, low, high = auroc_with_ci(y, p, resamples=300, seed=3)

    assert auroc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert low < auroc < high
    assert 0.02 < high - low < 0.25


def test_ci_is_the_same_whether_the_resamples_are_drawn_at_once_or_in_chunks(monkeypatch):
    from federation.core import metrics

    y, p = _calibrated_sample(400)
    at_once = auroc_with_ci(y, p, resamples=300, seed=3)
    monkeypatch.setattr(metrics, "BOOTSTRAP_CHUNK_DRAWS", 400 * 7)  # 7 resamples a chunk
    assert auroc_with_ci(y, p, resamples=300, seed=3) == at_once


def test_bootstrap_aurocs_equal_sklearn_on_each_resample_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=40)
    p = rng.integers(0, 5, size=40) / 4  # heavy ties
    draws = rng.integers(0, 40, size=(30, 40))
    draws[0] = np.flatnonzero(y == 1)[0]  # a resample drawing one row: one class

    aurocs = bootstrap_aurocs(y, p, draws)

    assert np.isnan(aurocs[0])
    np.testing.assert_allclose(aurocs[1:], [roc_auc_score(y[d], p[d]) for d in draws[1:]], atol=1e-12)


def test_ece_by_hand():
    # bin [0.1,0.2): risks 0.1,0.1 with one event -> |0.1-0.5|; bin [0.9,1]: 0.9 twice, two events
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 0.9])

    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)


def test_calibration_slope_one_for_calibrated_risks_and_below_one_for_overconfident():
    y, p = _calibrated_sample()
    logit = np.log(p / (1 - p))
    overconfident = 1 / (1 + np.exp(-3 * logit))

    slope, intercept = calibration_slope_intercept(y, p)
    slope_over, _ = calibration_slope_intercept(y, overconfident)

    assert slope == pytest.approx(1.0, abs=0.12)
    assert intercept == pytest.approx(0.0, abs=0.12)
    assert slope_over == pytest.approx(1 / 3, abs=0.06)


def test_sensitivity_specificity_at_threshold():
    y = np.array([1, 1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1])

    assert sensitivity_specificity(y, p, 0.5) == pytest.approx((2 / 3, 1 / 2))
    assert sensitivity_specificity(y, p, 0.65) == pytest.approx((1 / 3, 1 / 2))


def test_one_class_split_gives_nan_not_an_error():
    metrics = risk_metrics(np.ones(5), np.linspace(0.1, 0.9, 5), resamples=20)

    assert np.isnan(metrics["auroc"]) and np.isnan(metrics["auroc_ci_low"])
    assert np.isnan(metrics["calibration_slope"]) and np.isnan(metrics["specificity"])
    assert metrics["sensitivity"] == pytest.approx(0.6)
    assert metrics["n"] == 5 and metrics["n_positive"] == 5
