"""At scale the report shows the extreme sites one by one (issue S.4): 1,000 hospitals give a
readable report; pooled parts and the heterogeneity summary still cover every site."""

from __future__ import annotations

import numpy as np
import pandas as pd

from federation.modeler.heterogeneity import heterogeneity
from federation.modeler.plots import forest_plot
from federation.modeler.site_view import EXTREMES, MAX_SITES_SHOWN, shown_sites, site_view, write_sites_csv


def _evaluation(k: int) -> dict:
    rng = np.random.default_rng(0)
    auroc = rng.uniform(0.55, 0.95, k)
    sites = {
        f"h{i:04d}": {"auroc": a, "auroc_ci_low": a - 0.1, "auroc_ci_high": min(a + 0.04, 0.999), "n": 100}
        for i, a in enumerate(map(float, auroc))
    }
    sites["h0007"]["auroc"] = None  # a site whose AUROC could not be estimated
    curve = {"threshold": [0.1], "model": [0.1], "treat_all": [0.05], "treat_none": [0], "treated": [1]}
    return {
        "sites": sites,
        "pooled": {"auroc": 0.8},
        "data": {s: {"n_train": 200, "n_validation": 50, "n_test": 100} for s in sites},
        "decision_curve": {"pooled": curve, "sites": {s: curve for s in sites}},
        "calibration_quantile": {**{s: {} for s in sites}, "pooled": {}},
    }


def test_a_small_federation_shows_every_site():
    evaluation = _evaluation(MAX_SITES_SHOWN)

    assert shown_sites(evaluation) is None and site_view(evaluation, None) is evaluation


def test_a_thousand_sites_show_the_extremes_and_keep_pooled_parts(tmp_path):
    evaluation = _evaluation(1000)
    shown = shown_sites(evaluation)
    view = site_view(evaluation, shown)
    known = {s: m["auroc"] for s, m in evaluation["sites"].items() if m["auroc"] is not None}
    ranked = sorted(known, key=known.get)

    assert len(shown) == 2 * EXTREMES and shown[0] == "h0007"  # unknown AUROC first: look at it
    assert shown[1:EXTREMES] == ranked[: EXTREMES - 1] and shown[EXTREMES:] == ranked[-EXTREMES:]
    assert list(view["sites"]) == shown and set(view["data"]) == set(shown)
    assert set(view["decision_curve"]["sites"]) == set(shown) and "pooled" in view["decision_curve"]
    assert set(view["calibration_quantile"]) == set(shown) | {"pooled"}
    assert len(evaluation["sites"]) == 1000  # the evaluation itself is untouched
    table = pd.read_csv(write_sites_csv(tmp_path, evaluation))
    assert len(table) == 1000 and {"site", "auroc", "n_test"} <= set(table.columns)


def test_the_forest_plot_draws_the_shown_sites_of_a_summary_over_all():
    evaluation = _evaluation(1000)
    result = heterogeneity(evaluation["sites"])["auroc"]

    png = forest_plot(result, shown=shown_sites(evaluation))

    assert result["k"] == 999 and png.startswith(b"\x89PNG") and len(png) < 200_000
