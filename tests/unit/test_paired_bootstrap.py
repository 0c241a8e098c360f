"""The benefit's CI is the paired bootstrap: the same resampled rows scored by both models."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from federation.modeler.paired_bootstrap import auroc_difference_ci


def test_paired_interval_matches_a_written_out_bootstrap_and_is_narrower_than_unpaired():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    signal = y + rng.normal(0, 1.2, 400)
    p_a, p_b = signal + rng.normal(0, 0.3, 400), signal + rng.normal(0, 0.6, 400)

    low, high = auroc_difference_ci(y, p_a, p_b, resamples=300, seed=7)

    draws = np.random.default_rng(7).integers(0, 400, size=(300, 400))
    reference = [roc_auc_score(y[d], p_a[d]) - roc_auc_score(y[d], p_b[d]) for d in draws]
    assert np.allclose([low, high], np.percentile(reference, [2.5, 97.5]), atol=1e-12)
    assert low < roc_auc_score(y, p_a) - roc_auc_score(y, p_b) < high
    unpaired = np.percentile(
        [roc_auc_score(y[d], p_a[d]) - roc_auc_score(y[e], p_b[e]) for d, e in zip(draws, draws[::-1])],
        [2.5, 97.5],
    )
    assert high - low < unpaired[1] - unpaired[0]


def test_no_interval_without_both_classes_or_resamples():
    y = np.ones(20, dtype=int)
    assert auroc_difference_ci(y, np.arange(20.0), np.arange(20.0), resamples=100) is None
    assert auroc_difference_ci(np.r_[y, 0], np.arange(21.0), np.arange(21.0), resamples=0) is None
