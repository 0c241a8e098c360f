"""Between-site heterogeneity (issue T, acceptance 4): the random-effects summary, its interval,
I² and τ² agree with statsmodels' combine_effects and with metafor's published DerSimonian–Laird
fit of the BCG trials; the prediction interval with an independent computation of Higgins et
al.'s formula; sites without an interval are left out by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from federation.modeler.heterogeneity import IDENTITY, LOGIT, heterogeneity, random_effects

Z = stats.norm.ppf(0.975)
# metafor's dat.bcg (Colditz et al. 1994): vaccinated TB cases / non-cases, control cases / non-cases.
BCG = [
    (4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619),
    (33, 5036, 47, 5761), (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892),
    (29, 7470, 45, 7232), (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338),
    (27, 16886, 29, 17825),
]  # fmt: skip


def _as_intervals(effects: np.ndarray, variances: np.ndarray) -> dict[str, tuple[float, float, float]]:
    se = np.sqrt(variances)
    return {f"s{i}": (e, e - Z * s, e + Z * s) for i, (e, s) in enumerate(zip(effects, se))}


def _dersimonian_laird(y: np.ndarray, v: np.ndarray) -> tuple[float, float, float, float]:
    """The textbook computation, written out independently: (mean, se, τ², I²)."""
    w = 1 / v
    fixed = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - fixed) ** 2)
    tau2 = max(0.0, (q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    w_re = 1 / (v + tau2)
    mean = np.sum(w_re * y) / np.sum(w_re)
    return mean, math.sqrt(1 / np.sum(w_re)), tau2, max(0.0, (q - (len(y) - 1)) / q)


def test_bcg_trials_match_metafors_published_dersimonian_laird_fit():
    """rma(yi, vi, method = "DL") on dat.bcg (log relative risks): τ² 0.3088, estimate −0.7141,
    SE 0.1787, I² 92.12 % (metafor's documentation, rounded as it prints them)."""
    counts = np.array(BCG, dtype=float)
    tpos, tneg, cpos, cneg = counts.T
    y = np.log((tpos / (tpos + tneg)) / (cpos / (cpos + cneg)))
    v = 1 / tpos - 1 / (tpos + tneg) + 1 / cpos - 1 / (cpos + cneg)

    result = random_effects(_as_intervals(y, v), IDENTITY)

    assert result["tau2"] == pytest.approx(0.3088, abs=5e-5)
    assert result["summary"] == pytest.approx(-0.7141, abs=5e-5)
    assert (result["ci"][1] - result["ci"][0]) / (2 * Z) == pytest.approx(0.1787, abs=5e-5)
    assert result["i2"] == pytest.approx(0.9212, abs=5e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logit_auroc_summary_and_i2_agree_with_statsmodels_and_the_textbook(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 12))
    auroc = rng.uniform(0.6, 0.95, k)
    se_logit = rng.uniform(0.1, 0.6, k)
    logit = np.log(auroc / (1 - auroc))
    sites = {
        f"site{i}": (float(a), 1 / (1 + math.exp(-(x - Z * s))), 1 / (1 + math.exp(-(x + Z * s))))
        for i, (a, x, s) in enumerate(zip(auroc, logit, se_logit))
    }

    result = random_effects(sites, LOGIT)
    reference = combine_effects(logit, se_logit**2, method_re="dl")
    mean, se, tau2, i2 = _dersimonian_laird(logit, se_logit**2)

    expit = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert result["k"] == k
    assert result["summary"] == pytest.approx(expit(reference.mean_effect_re), abs=1e-6)
    assert result["summary"] == pytest.approx(expit(mean), abs=1e-6)
    assert result["i2"] == pytest.approx(reference.i2, abs=1e-6) and result["i2"] == pytest.approx(
        i2, abs=1e-6
    )
    assert result["tau2"] == pytest.approx(tau2, abs=1e-6)
    assert result["ci"] == pytest.approx([expit(mean - Z * se), expit(mean + Z * se)], abs=1e-6)
    half = stats.t.ppf(0.975, k - 2) * math.sqrt(tau2 + se**2)
    assert result["prediction_interval"] == pytest.approx([expit(mean - half), expit(mean + half)], abs=1e-6)
    assert sum(result["weights"].values()) == pytest.approx(1.0)


def test_sites_without_an_interval_are_left_out_by_name_and_two_sites_give_no_prediction_interval():
    sites = {
        "a": {"auroc": 0.8, "auroc_ci_low": 0.7, "auroc_ci_high": 0.88},
        "b": {"auroc": 0.7, "auroc_ci": [0.55, 0.82]},
        "tiny": {"auroc": None, "not_estimable": {"auroc": {"text": "too few (2 non-events < 10)"}}},
        "flat": {"auroc": 1.0, "auroc_ci_low": 1.0, "auroc_ci_high": 1.0},
    }

    found = heterogeneity(sites)["auroc"]

    assert found["k"] == 2 and set(found["weights"]) == {"a", "b"}
    assert found["left_out"]["tiny"] == "too few (2 non-events < 10)"
    assert "no width" in found["left_out"]["flat"]
    assert found["prediction_interval"] is None and "3 or more" in found["prediction_interval_why"]
    one = heterogeneity({"a": sites["a"]})["auroc"]
    assert one["k"] == 1 and "summary" not in one and "needs 2" in one["why"]


def test_a_perfect_small_site_gets_a_finite_weight():
    sites = {
        "perfect": (1.0, 0.9, 1.0),
        "b": (0.8, 0.7, 0.88),
        "c": (0.75, 0.6, 0.86),
    }

    result = random_effects(sites, LOGIT)

    assert all(math.isfinite(v) for v in [result["summary"], *result["ci"], *result["prediction_interval"]])
    assert 0 < result["weights"]["perfect"] < 1


def test_homogeneous_sites_truncate_tau2_at_zero_as_dersimonian_laird_defines_it():
    """Q < k − 1: τ² and I² are 0 and the summary is the fixed-effect one (metafor's DL; not
    statsmodels' raw (Q − df) / c, which is negative here)."""
    y = np.array([0.80, 0.81, 0.79, 0.80])
    v = np.array([0.04, 0.05, 0.03, 0.06])
    assert combine_effects(y, v, method_re="dl").tau2 < 0  # the raw moment estimate

    result = random_effects(_as_intervals(y, v), IDENTITY)
    mean, se, tau2, i2 = _dersimonian_laird(y, v)

    assert result["tau2"] == tau2 == 0.0 and result["i2"] == i2 == 0.0
    assert result["summary"] == pytest.approx(mean, abs=1e-9)
    assert (result["ci"][1] - result["ci"][0]) / (2 * Z) == pytest.approx(se, abs=1e-9)
    half = stats.t.ppf(0.975, len(y) - 2) * se
    assert result["prediction_interval"] == pytest.approx([mean - half, mean + half], abs=1e-9)
