"""Issue T.6: every measure of the metrics table with a 95% CI from one bootstrap, and a measure
that needs both classes (or one) withheld below MIN_CLASS_ROWS with its reason."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, recall_score

from federation.core.estimable import MIN_CLASS_ROWS
from federation.core.metric_intervals import MEASURES, bootstrap_measures, risk_metrics_with_intervals
from federation.core.metrics import auroc_with_ci, calibration_slope_intercept, expected_calibration_error
from federation.modeler.report import metrics_table
from federation.modeler.run_evaluation import POOLED, EvalOptions, _deployment_entry, score
from federation.modeler.usefulness import headline


def _rows(seed: int, positives: int, negatives: int):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(positives, int), np.zeros(negatives, int)]
    p = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.2, len(y)), 0.01, 0.99).round(2)  # rounded: ties
    return y, p


def test_each_bootstrap_measure_equals_scikit_learn_on_its_resample():
    import statsmodels.api as sm

    y, p = _rows(0, 60, 90)
    draws = np.random.default_rng(1).integers(0, len(y), size=(5, len(y)))
    found = bootstrap_measures(y, p, 0.5, draws)
    for i, d in enumerate(draws):
        yd, pd_ = y[d], p[d]
        assert found["auprc"][i] == pytest.approx(average_precision_score(yd, pd_), abs=1e-12)
        assert found["brier"][i] == pytest.approx(brier_score_loss(yd, pd_), abs=1e-12)
        assert found["ece"][i] == pytest.approx(expected_calibration_error(yd, pd_), abs=1e-12)
        assert found["sensitivity"][i] == pytest.approx(recall_score(yd, pd_ >= 0.5), abs=1e-12)
        assert found["specificity"][i] == pytest.approx(recall_score(1 - yd, pd_ < 0.5), abs=1e-12)
        logit = np.log(pd_ / (1 - pd_))
        intercept, slope = sm.Logit(yd, sm.add_constant(logit)).fit(disp=0).params
        assert found["calibration_slope"][i] == pytest.approx(slope, rel=1e-7)
        assert found["calibration_intercept"][i] == pytest.approx(intercept, rel=1e-7, abs=1e-9)
        assert calibration_slope_intercept(yd, pd_)[0] == pytest.approx(slope, rel=1e-3)


def test_every_measure_gets_a_ci_from_the_auroc_bootstrap_itself():
    y, p = _rows(2, 80, 120)
    found = risk_metrics_with_intervals(y, p, threshold=0.5, resamples=300, seed=7)
    _, low, high = auroc_with_ci(y, p, resamples=300, seed=7)
    assert found["auroc_ci"] == [low, high] == [found["auroc_ci_low"], found["auroc_ci_high"]]
    for measure in MEASURES:
        interval = found[f"{measure}_ci"]
        assert interval[0] <= found[measure] <= interval[1], measure
        assert interval[0] < interval[1], measure
    assert "not_estimable" not in found


def test_a_site_with_two_non_events_shows_too_few_not_a_number():
    """Switzerland's test rows: 35 events, 2 non-events. Slope, intercept, AUROC, AUPRC and
    specificity need non-events: withheld with the reason; sensitivity (35 events), Brier and
    ECE keep their values and CIs; the headline ranks only the estimable site, with its CI."""
    options = EvalOptions(threshold=0.5, resamples=200, seed=0)
    metrics = score({"switzerland": _rows(3, 35, 2), "cleveland": _rows(4, 40, 50)}, options)
    swiss = metrics["switzerland"]
    marker = f"too few (2 non-events < {MIN_CLASS_ROWS})"
    for measure in ("auroc", "auprc", "calibration_slope", "calibration_intercept", "specificity"):
        assert swiss[measure] is None and swiss[f"{measure}_ci"] is None, measure
        assert swiss["not_estimable"][measure]["text"] == marker
        assert swiss["not_estimable"][measure]["non_events"] == 2
    assert swiss["auroc_ci_low"] is None and swiss["auroc_ci_high"] is None
    for measure in ("sensitivity", "brier", "ece"):
        low, high = swiss[f"{measure}_ci"]
        assert low <= swiss[measure] <= high, measure

    evaluation = {"sites": metrics, POOLED: metrics["cleveland"], "threshold": 0.5, "round": 3}
    worst = headline(evaluation)
    assert worst["worst_site_auroc"]["site"] == "cleveland"
    assert worst["worst_site_auroc"]["auroc_ci"] == metrics["cleveland"]["auroc_ci"]
    assert worst["sites_too_few"] == {"switzerland": marker}

    table = metrics_table(evaluation)
    rows = {row[0]: row for row in table.rows}
    assert rows["switzerland"][1] == marker  # AUROC column
    cleveland = metrics["cleveland"]
    low, high = cleveland["brier_ci"]
    assert rows["cleveland"][3] == f"{cleveland['brier']:.3f} [{low:.3f}, {high:.3f}]"
    for cell in rows["cleveland"][1:]:  # every metric cell: value [low, high]
        assert cell.count("[") == 1 and cell.endswith("]"), cell


def test_deployment_figures_apply_the_floor_to_released_counts_and_say_why_no_ci():
    released = {"n": 37, "n_positive": 35, "auroc": 0.49, "auroc_ci_low": 0.1, "auroc_ci_high": 0.8,
                "brier": 0.2, "specificity": 0.5, "sensitivity": 0.7}  # fmt: skip
    entry = _deployment_entry(dict(released), released, noisy=True)
    assert entry["auroc"] is None and entry["auroc_ci"] is None
    assert (
        entry["not_estimable"]["specificity"]["text"]
        == f"too few (≈2 non-events < {MIN_CLASS_ROWS}, noisy counts)"
    )
    assert entry["brier"] == 0.2 and entry["brier_ci"] is None
    assert entry["ci_unavailable"]["brier"]["reason"] == "not_released"
