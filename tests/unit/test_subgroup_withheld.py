"""Issue T.5: a withheld subgroup level, feature or site says what and why, and the deployment
path's subgroup table has no mislabelled, fractional, pointless or too-small figures."""

from __future__ import annotations

import numpy as np

from client.subgroups import from_wire, site_subgroups, subgroup_wire_metrics
from federation.core.dataspec import parse_dataset_spec
from federation.core.estimable import MIN_CLASS_ROWS
from federation.core.histogram_metrics import RELEASE_GROUPS, coarse_histograms, spread
from federation.modeler.subgroup_tables import subgroup_table
from federation.modeler.usefulness import subgroups_from_sites

SPEC = parse_dataset_spec(
    {
        "name": "t",
        "label": {"column": "y", "positive_values": [1], "negative_values": [0]},
        "features": [{"name": "age", "type": "numeric", "subgroup_bins": [50, 65]}],
        "sites": {"a": "a.csv", "b": "b.csv"},
    }
)


def _site(seed: int, ages: dict[float, int]):
    """Rows per age, half events; risks informative."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.full(n, age) for age, n in ages.items()])[:, None].astype(float)
    y = rng.integers(0, 2, len(x))
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, len(x)), 0.01, 0.99)
    return x, y, p


def _released(x, y, p):
    found = site_subgroups(x, y, p, SPEC, min_cell=MIN_CLASS_ROWS, threshold=0.5, seed=1, resamples=50)
    return found, from_wire(subgroup_wire_metrics(found))


def test_the_site_names_every_level_it_withholds_and_why():
    # <50: 6 rows (under k of a class); 50-<65 the smallest other level, hidden with it
    x, y, p = _site(0, {40: 6, 55: 60, 70: 120})
    found, _ = _released(x, y, p)
    withheld = found["age"]["withheld"]
    assert withheld["<50"]["reason"] == "k_rule_small_level"
    assert withheld["50-<65"]["reason"] == "k_rule_hidden_with_small_level"
    assert withheld["histograms_withheld"]["reason"] == "histograms_withheld"
    assert list(found["age"]["levels"]) == [">=65"]


def test_deployment_pooled_levels_name_their_sites_and_withheld_ones_say_why():
    """Site a hides <50 (small) and 50-<65 with it; b releases all three. The pooled table must
    not show b's <50 as 'pooled', must say a withheld its levels and its histograms, and the
    pooled AUROC of a level a's histograms are missing from is withheld with the reason."""
    a = _released(*_site(1, {40: 6, 55: 60, 70: 120}))[1]
    b = _released(*_site(2, {40: 60, 55: 60, 70: 120}))[1]
    found = subgroups_from_sites({"a": a, "b": b}, threshold=0.5, spec=SPEC)

    pooled = found["pooled"]["age"]
    assert set(pooled["levels"]) == {">=65"}
    assert pooled["withheld"]["<50"]["reason"] == "single_site"
    assert pooled["levels"][">=65"]["sites"] == ["a", "b"]
    assert pooled["levels"][">=65"]["auroc"] is None
    assert pooled["levels"][">=65"]["withheld_measures"]["auroc"]["text"].startswith("not pooled: a hid part")
    assert set(found["sites"]["a"]["age"]["withheld"]) == {"<50", "50-<65", "histograms_withheld"}

    table = subgroup_table({"subgroups": found, "threshold": 0.5})
    rows = {row[0]: row for row in table.rows}
    assert rows["pooled: age = <50"][1].startswith("not pooled: only b released")
    assert rows["a: age = <50"][1].startswith("withheld by the site's k rule")
    assert rows["pooled: age = >=65"][3].startswith("not pooled: a hid part")
    assert rows["pooled: age = >=65"][1] == str(pooled["levels"][">=65"]["n"])  # an integer


def test_no_interval_is_shown_without_its_point():
    """A level whose point is undefined (a one-class or separable fit) while some resamples are
    not: no interval ('n/a [8.783, 19.449]' in the report before)."""
    from federation.core.subgroups import _with_ci

    point = {"calibration_slope": np.array([np.nan]), "auroc": np.array([0.7])}
    boot = {"calibration_slope": np.linspace(8.0, 20.0, 50), "auroc": np.linspace(0.6, 0.8, 50)}
    found = _with_ci(point, boot, ["calibration_slope", "auroc"])
    assert np.isnan([found["calibration_slope_ci_low"], found["calibration_slope_ci_high"]]).all()
    assert found["auroc_ci_low"] < 0.7 < found["auroc_ci_high"]
    row = subgroup_table({"subgroups": {"pooled": {"f": {"levels": {"x": {"n": 40, "n_positive": 20,
          "calibration_slope": None, "calibration_slope_ci_low": 8.783, "calibration_slope_ci_high": 19.449}},
          "gaps": {}}}}, "threshold": 0.5}).rows[0]  # fmt: skip
    assert row[5] == "n/a"


def test_a_dp_level_of_eight_rows_is_too_few_and_counts_are_marked_noisy():
    """Under DP (a noise std small enough that 8 rows are clearly there) an 8-row level gave
    AUROC 1.000 [1.000, 1.000]; now the too-few marker, and counts '≈N (noisy)', not '326.000'."""
    rng = np.random.default_rng(5)
    big_y, small_y = rng.integers(0, 2, 326), np.r_[np.ones(4, int), np.zeros(4, int)]
    big_p = np.clip(0.5 + 0.3 * (big_y - 0.5) + rng.normal(0, 0.2, 326), 0.01, 0.99)
    small_p = np.r_[np.full(4, 0.9), np.full(4, 0.1)]
    noise = 0.05

    def level(y, p):
        hist = coarse_histograms(y, p) + rng.normal(0, noise, (2, RELEASE_GROUPS))
        return {"score_hist_pos": spread(hist[0]), "score_hist_neg": spread(hist[1]), "noise_std": noise}

    released = {
        "a": {"age": {"levels": {">=65": level(big_y, big_p), "<50": level(small_y, small_p)}, "gaps": {}}}
    }
    found = subgroups_from_sites(released, threshold=0.5, spec=SPEC)
    small = found["sites"]["a"]["age"]["levels"]["<50"]
    assert small["auroc"] is None and small["auroc_ci_low"] is None
    assert (
        small["not_estimable"]["auroc"]["text"]
        == f"too few (≈4 events < {MIN_CLASS_ROWS}; ≈4 non-events < {MIN_CLASS_ROWS}, noisy counts)"
    )

    rows = {row[0]: row for row in subgroup_table({"subgroups": found, "threshold": 0.5}).rows}
    assert rows["a: age = <50"][3] == small["not_estimable"]["auroc"]["text"]
    big = found["sites"]["a"]["age"]["levels"][">=65"]
    assert rows["a: age = >=65"][1] == f"≈{round(big['n'])} (noisy)"
    assert rows["a: age = >=65"][3].count("[") == 1  # estimable: value [low, high]
