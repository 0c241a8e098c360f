"""Decision curves from per-site histograms against dcurves on the pooled rows (issue N acceptance 2)."""

import numpy as np
import pandas as pd
from dcurves import dca

from federation.core.decision_curve import GRID, net_benefit, quantile_calibration, rates_at
from federation.core.metrics import HIST_BINS, score_histograms


def _site(rng, n, prevalence):
    """Scores at bin centres ((b + 0.5)/100): never on a threshold, so the binning is exact."""
    y = (rng.random(n) < prevalence).astype(int)
    bins = np.clip(np.round(rng.normal(20 + 40 * y, 15)), 0, HIST_BINS - 1)
    return y, (bins + 0.5) / HIST_BINS


def test_pooled_net_benefit_from_site_histograms_equals_dcurves_on_pooled_scores():
    """Every score lies at a bin centre, so 'score >= t' and 'bin >= t·100' agree at every
    grid threshold: the comparison is exact at all 100 thresholds (0.00 ... 0.99)."""
    rng = np.random.default_rng(3)
    sites = [_site(rng, n, prev) for n, prev in ((300, 0.1), (120, 0.3), (500, 0.08))]
    hists = [score_histograms(y, p) for y, p in sites]
    pooled = net_benefit(np.sum([h[0] for h in hists], 0), np.sum([h[1] for h in hists], 0))
    frame = pd.DataFrame(
        {"y": np.concatenate([y for y, _ in sites]), "risk": np.concatenate([p for _, p in sites])}
    )
    reference = dca(data=frame, outcome="y", modelnames=["risk"], thresholds=GRID)
    for name, column in (("risk", "model"), ("all", "treat_all"), ("none", "treat_none")):
        expected = reference[reference["model"] == name].sort_values("threshold")["net_benefit"]
        np.testing.assert_allclose(pooled[column], expected.to_numpy(), rtol=0, atol=1e-9)


def test_control_a_threshold_off_the_grid_is_not_what_the_histograms_give():
    """Control: with scores inside bins, a threshold between grid points differs from the
    histogram count, so the test above would fail if the bins were not aligned."""
    y = np.array([1, 0, 1, 0])
    p = np.array([0.305, 0.305, 0.9, 0.1])
    sens, spec = rates_at(*score_histograms(y, p), 0.30)
    assert (sens, spec) == (1.0, 0.5)
    assert ((p >= 0.31) & (y == 1)).sum() / y.sum() == 0.5  # the row scores 0.305 < 0.31


def test_quantile_calibration_bins_hold_equal_counts_with_wilson_intervals():
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)
    cal = quantile_calibration(y, p, bins=10)
    assert cal["n"] == [100.0] * 10
    assert all(lo <= o <= hi for lo, o, hi in zip(cal["low"], cal["observed"], cal["high"]))
