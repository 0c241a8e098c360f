"""Subgroup maths: the batched calibration slope, and pooling the sites' released subgroups."""

from __future__ import annotations

import numpy as np
import pytest

from client.subgroups import from_wire, site_subgroups, subgroup_wire_metrics
from federation.core.dataspec import parse_dataset_spec
from federation.core.metrics import calibration_slope_intercept, pooled_from_histograms, score_histograms
from federation.core.subgroups import batch_slopes
from federation.modeler.usefulness import headline, subgroups_from_sites

SPEC = parse_dataset_spec(
    {
        "name": "t",
        "label": {"column": "y", "positive_values": [1], "negative_values": [0]},
        "features": [{"name": "sex", "type": "binary", "subgroup": True}],
        "sites": {"a": "a.csv", "b": "b.csv"},
    }
)


def _site(seed: int, n: int):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 1)) < 0.5).astype("float32")
    p = np.clip(rng.beta(2, 5, n), 0.01, 0.99)
    y = (rng.random(n) < p).astype(int)
    return x, y, p


def test_batched_newton_slope_equals_the_maximum_likelihood_fit():
    """statsmodels' exact fit to 1e-8; scikit-learn's (lbfgs, tol 1e-4) to 1e-3."""
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    p = rng.random((3, 400)) * 0.9 + 0.05
    y = (rng.random((3, 400)) < p**1.5).astype(float)
    logit = np.log(p / (1 - p))
    exact = [sm.Logit(y[i], sm.add_constant(logit[i])).fit(disp=0).params[1] for i in range(3)]
    sklearn = [calibration_slope_intercept(y[i].astype(int), p[i])[0] for i in range(3)]
    np.testing.assert_allclose(batch_slopes(logit, y), exact, rtol=1e-8)
    np.testing.assert_allclose(batch_slopes(logit, y), sklearn, rtol=1e-3)


def test_pooled_subgroups_from_released_keys_sum_the_sites_and_pool_auroc_from_histograms():
    sites = {name: _site(seed, n) for name, seed, n in (("a", 1, 400), ("b", 2, 300))}
    released = {
        name: from_wire(
            subgroup_wire_metrics(
                site_subgroups(x, y, p, SPEC, min_cell=1, threshold=0.5, seed=3, resamples=50)
            )
        )
        for name, (x, y, p) in sites.items()
    }

    pooled = subgroups_from_sites(released, threshold=0.5)["pooled"]["sex"]

    for level, value in (("0", 0.0), ("1", 1.0)):
        rows = [(y[x[:, 0] == value], p[x[:, 0] == value]) for x, y, p in sites.values()]
        y_all = np.concatenate([r[0] for r in rows])
        p_all = np.concatenate([r[1] for r in rows])
        m = pooled["levels"][level]
        assert (m["n"], m["n_positive"]) == (len(y_all), int(y_all.sum()))
        assert m["citl"] == pytest.approx(p_all.mean() - y_all.mean())
        hists = map(np.array, score_histograms(y_all, p_all))
        assert m["auroc"] == pytest.approx(pooled_from_histograms(*hists)["auroc"])
        assert m["tpr"] == pytest.approx(((p_all >= 0.5) & (y_all == 1)).sum() / y_all.sum())
    gaps = pooled["gaps"]
    assert gaps["auroc_gap_ci_low"] <= gaps["auroc_gap"] <= gaps["auroc_gap_ci_high"]
    evaluation = {
        "sites": {"a": {"auroc": 0.7}, "b": {"auroc": 0.6}},
        "subgroups": {"pooled": {"sex": pooled}},
    }
    worst = headline(evaluation)
    assert worst["worst_site_auroc"] == {"site": "b", "auroc": 0.6, "auroc_ci": None}
    assert worst["worst_group_auroc"]["auroc"] == min(pooled["levels"][lv]["auroc"] for lv in ("0", "1"))


def test_equalized_odds_interval_holds_its_point_and_excludes_zero_only_with_a_gap_that_does():
    """Issue T, 2: two levels of one site whose model treats them alike (both TPR and FPR gap
    intervals hold 0). The equalized-odds difference's interval must hold its point and 0;
    a level whose TPR is much lower makes it exclude 0, as its TPR gap's interval does."""
    from federation.core.subgroups import feature_gaps, group_metrics

    rng = np.random.default_rng(4)

    def level(n, shift):
        y = rng.integers(0, 2, n)
        p = np.clip(0.5 + 0.3 * (y - 0.5) - shift * y + rng.normal(0, 0.15, n), 0.01, 0.99)
        return y, p

    def gaps(shift_b):
        points, boots = {}, {}
        for name, shift in (("a", 0.0), ("b", shift_b)):
            y, p = level(150, shift)
            points[name], boots[name] = group_metrics(y, p, threshold=0.5, resamples=400, rng=rng)
        return feature_gaps(points, boots)

    alike = gaps(0.0)
    eod = alike["equalized_odds_difference"]
    assert alike["tpr_gap_ci_low"] <= 0 <= alike["tpr_gap_ci_high"]
    assert alike["fpr_gap_ci_low"] <= 0 <= alike["fpr_gap_ci_high"]
    assert eod == pytest.approx(max(alike["tpr_gap"], alike["fpr_gap"]))
    assert (
        alike["equalized_odds_difference_ci_low"] == 0.0 <= eod <= alike["equalized_odds_difference_ci_high"]
    )

    apart = gaps(0.3)
    assert apart["tpr_gap_ci_low"] > 0 or apart["tpr_gap_ci_high"] < 0
    low, high = apart["equalized_odds_difference_ci_low"], apart["equalized_odds_difference_ci_high"]
    assert 0 < low <= apart["equalized_odds_difference"] <= high
