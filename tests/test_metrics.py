"""Per-site metrics are scikit-learn's; pooled AUROC from histograms matches exact pooling."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from federation.metrics import binary_metrics, pooled_from_histograms, score_histograms
from server.feature_stats import combine_statistics


def test_pooled_auroc_from_site_histograms_matches_exact_pooled_auroc():
    rng = np.random.default_rng(0)
    sites = []
    for shift in (0.0, 0.5, 1.0, -0.5):
        y = rng.integers(0, 2, 200)
        p = 1 / (1 + np.exp(-(rng.normal(size=200) + 1.5 * y + shift)))
        sites.append((y, p))
    hists = [score_histograms(y, p) for y, p in sites]

    pooled = pooled_from_histograms(np.sum([h[0] for h in hists], 0), np.sum([h[1] for h in hists], 0))
    exact = roc_auc_score(np.concatenate([y for y, _ in sites]), np.concatenate([p for _, p in sites]))

    assert abs(pooled["auroc"] - exact) < 0.005


def test_site_metrics_are_sklearn_values():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.8, 0.9])

    m = binary_metrics(y, p)

    assert m["auroc"] == roc_auc_score(y, p)
    assert np.isnan(binary_metrics(np.ones(3), np.array([0.2, 0.5, 0.7]))["auroc"])


def test_federated_standardization_equals_pooled_statistics():
    rng = np.random.default_rng(1)
    parts = [rng.normal(i, 1 + i, size=(50 + 10 * i, 3)) for i in range(4)]
    parts[2][:5, 1] = np.nan
    moments = []
    for x in parts:
        observed = ~np.isnan(x)
        values = np.where(observed, x, 0.0)
        moments.append((observed.sum(0), values.sum(0), (values**2).sum(0)))

    mean, std = combine_statistics(moments)

    pooled = np.concatenate(parts)
    np.testing.assert_allclose(mean, np.nanmean(pooled, 0), atol=1e-9)
    np.testing.assert_allclose(std, np.nanstd(pooled, 0), atol=1e-9)
