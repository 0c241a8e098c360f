"""Releases outside ε: attacks from the security review must fail against ``client.releases``.

Each attack is also run against the exact release (k = 1, or the per-column rule alone) as a
control, so a test fails if the protection stops working. Real UCI sites where it matters.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from client.releases import (
    evaluation_refusal,
    feature_column_slices,
    released_feature_statistics,
    released_score_histograms,
)
from federation.cli.site import load_dataset_spec
from federation.core import wire
from federation.core.data import load_site, site_file
from federation.core.dataspec import parse_dataset_spec
from federation.core.errors import ConfigError, DataError
from federation.core.feature_stats import combine_statistics
from federation.core.metrics import HIST_BINS, score_histograms
from federation.core.model import ModelSpec, build_model
from server.feature_stats import spec_prior

SPEC = load_dataset_spec("uci_heart")
NAMES = SPEC.encoded_feature_names()


def _site(name: str, spec=SPEC):
    return load_site(site_file(spec, name), spec, name)


def _columns(stats: dict, prefix: str) -> dict[str, tuple[float, float]]:
    return {
        n: (stats[wire.STATS_COUNT][i], stats[wire.STATS_SUM][i])
        for i, n in enumerate(NAMES)
        if n.startswith(prefix)
    }


# ---- 1. feature statistics -------------------------------------------------------------------


def test_switzerland_rare_chest_pain_count_is_not_released():
    """Review finding: Switzerland's training rows hold 2 with cp=1; the count left the site."""
    x = _site("switzerland").x_train

    exact = released_feature_statistics(x, SPEC, min_cell=1)
    released = released_feature_statistics(x, SPEC)

    assert _columns(exact, "cp=1")["cp=1"][1] == 2  # control: the exact release gives the 2 away
    assert all(v == (0.0, 0.0) for v in _columns(released, "cp=").values())
    assert all(released[k][NAMES.index(c)] == 0 for k in released for c in NAMES if c.startswith("cp="))


def test_withholding_only_the_rare_levels_would_give_them_back_by_subtraction():
    """Per-column rule alone: count - Σ(released levels) = 3, Switzerland's cp=1 or cp=2 rows."""
    x = _site("switzerland").x_train
    exact = _columns(released_feature_statistics(x, SPEC, min_cell=1), "cp=")
    per_column = {n: (c, s) if s >= 10 and c - s >= 10 else (0.0, 0.0) for n, (c, s) in exact.items()}
    released = _columns(released_feature_statistics(x, SPEC), "cp=")

    def recovered(cols):
        count = max(c for c, _ in cols.values())
        return count - sum(s for c, s in cols.values() if c > 0)

    assert [n for n, v in per_column.items() if v == (0.0, 0.0)] == ["cp=1", "cp=2"]
    assert recovered(per_column) == exact["cp=1"][1] + exact["cp=2"][1] == 3  # control: a cell < 10
    assert recovered(released) == 0  # nothing released: nothing to subtract from


def test_released_columns_are_the_exact_moments_and_the_rest_zero():
    x = _site("cleveland").x_train
    released = released_feature_statistics(x, SPEC)
    observed = ~np.isnan(x)
    kept = np.array(released[wire.STATS_COUNT]) > 0

    np.testing.assert_array_equal(np.array(released[wire.STATS_COUNT])[kept], observed.sum(0)[kept])
    np.testing.assert_allclose(
        np.array(released[wire.STATS_SUMSQ])[kept], np.nansum(x.astype("float64") ** 2, 0)[kept]
    )
    assert kept[NAMES.index("age")] and not kept[NAMES.index("restecg=1")]  # restecg=1: 1 row
    assert all(released[k][i] == 0 for k in released for i in np.flatnonzero(~kept))


def _attacker_cells(stats: dict, spec, n_rows: int) -> list[float]:
    """Every group size an observer can derive from one release and the site's row count."""
    cells = []
    for feat, cols in feature_column_slices(spec):
        count, sums = stats[wire.STATS_COUNT][cols], stats[wire.STATS_SUM][cols]
        if count[0] == 0:
            continue
        cells += [count[0]] + [n_rows - count[0]] * (n_rows > count[0])
        if feat.type == "binary":  # values 0, 1 and a stray 2: n1 + 2·n2 = sum, n1 + 4·n2 = sumsq
            twos = (stats[wire.STATS_SUMSQ][cols][0] - sums[0]) / 2
            ones = sums[0] - 2 * twos
            cells += [ones, count[0] - ones - twos] + [twos] * (twos > 0)
        if feat.type == "categorical":
            cells += [*sums, *(count[0] - s for s in sums)] + [count[0] - sum(sums)] * (count[0] > sum(sums))
    return cells


_MIXED = parse_dataset_spec(
    {
        "name": "mixed",
        "columns": ["a", "b", "c", "y"],
        "label": {"column": "y", "positive_values": [1]},
        "sites": {"s": "s.csv"},
        "features": [
            {"name": "a", "type": "numeric"},
            {"name": "b", "type": "binary"},
            {"name": "c", "type": "categorical", "levels": [1, 2, 3], "drop_first": True},
        ],
    }
)


_RARE_REST = [(1.0, 0.0, 2)] * 12 + [(2.0, 1.0, 3)] * 12 + [(3.0, 2.0, 1)] * 3  # 3 stray/dropped


@settings(max_examples=150, deadline=None)
@example(rows=_RARE_REST, min_cell=10)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(-50, 50)),
            st.one_of(st.none(), st.sampled_from([0.0, 1.0, 1.0, 0.0, 2.0])),
            st.one_of(st.none(), st.sampled_from([1, 2, 3, 4])),
        ),
        min_size=1,
        max_size=80,
    ),
    min_cell=st.integers(2, 12),
)
def test_no_derivable_cell_of_a_release_is_under_k(rows, min_cell):
    """Numeric, binary (with a stray 2) and drop-first categorical (an unknown level 4), missing too."""
    nan = float("nan")
    x = np.array(
        [
            [
                nan if a is None else a,
                nan if b is None else b,
                *([nan, nan] if c is None else [float(c == 2), float(c == 3)]),
            ]
            for a, b, c in rows
        ]
    )

    stats = released_feature_statistics(x, _MIXED, min_cell=min_cell)

    assert all(c >= min_cell for c in _attacker_cells(stats, _MIXED, len(rows)))


_NUMERIC = parse_dataset_spec(
    {
        "name": "coded",
        "columns": ["v", "y"],
        "label": {"column": "y", "positive_values": [1]},
        "sites": {"s": "s.csv"},
        "features": [{"name": "v", "type": "numeric"}],
    }
)


def test_a_coded_numeric_column_with_a_rare_value_is_withheld():
    """Values 0/1/2 with 3 rows at 2: count, sum and sumsq solve every value's count."""
    x = np.r_[np.zeros(20), np.ones(20), 2 * np.ones(3)][:, None]

    def solved(stats):
        moments = [stats[k][0] for k in (wire.STATS_COUNT, wire.STATS_SUM, wire.STATS_SUMSQ)]
        return np.linalg.solve(np.vander([0.0, 1.0, 2.0], increasing=True).T, moments)

    exact = released_feature_statistics(x, _NUMERIC, min_cell=1)
    released = released_feature_statistics(x, _NUMERIC)

    np.testing.assert_allclose(solved(exact), [20, 20, 3])  # control: the attacker's solve works
    assert released[wire.STATS_COUNT] == [0.0] and solved(released).tolist() == [0, 0, 0]
    everyone = released_feature_statistics(np.full((40, 1), 7.0), _NUMERIC)  # all share 1 value
    assert everyone[wire.STATS_COUNT] == [0.0]
    assert released_feature_statistics(np.arange(40.0)[:, None], _NUMERIC)[wire.STATS_COUNT] == [40.0]


def test_bad_thresholds_and_matrices_are_one_line_errors():
    x = _site("va").x_train
    with pytest.raises(ConfigError, match=r"^site setting min_cell must be a whole number >= 1 \(got 0\)"):
        released_feature_statistics(x, SPEC, min_cell=0)
    with pytest.raises(DataError, match=r"training matrix has 3 columns.*encodes 22"):
        released_feature_statistics(x[:, :3], SPEC)
    with pytest.raises(ConfigError, match="min_rows"):
        evaluation_refusal(np.ones(60), min_rows=2.5)


def _preprocessed(min_cell: int, prior) -> np.ndarray:
    """Standardized UCI training rows when every site releases with ``min_cell``."""
    sites = [_site(s) for s in SPEC.site_names]
    parts = [tuple(released_feature_statistics(s.x_train, SPEC, min_cell=min_cell).values()) for s in sites]
    model = build_model(ModelSpec("mlp", len(NAMES)))
    model.preprocess.set_statistics(*combine_statistics(parts, prior=prior))
    x = np.concatenate([s.x_train for s in sites])
    with torch.no_grad():
        z = model.preprocess(torch.as_tensor(x))[:, : len(NAMES)].numpy()
    return np.where(np.isnan(x), np.nan, z)


def test_thal_withheld_at_every_uci_site_is_scaled_by_the_prior():
    """At k=10 all four sites withhold thal (a level under 10, or a missing row); cp=* survive."""
    z = _preprocessed(10, spec_prior(SPEC))

    for level in ("thal=3", "thal=6", "thal=7"):
        assert set(np.unique(z[:, NAMES.index(level)][~np.isnan(z[:, NAMES.index(level)])])) == {-1.0, 1.0}
    assert np.nanmax(np.abs(z)) < 10


def test_with_nothing_released_the_prior_keeps_inputs_scaled_unlike_the_raw_fallback():
    z_raw = _preprocessed(10**6, None)
    z = _preprocessed(10**6, spec_prior(SPEC))

    assert np.nanmax(np.abs(z_raw[:, NAMES.index("chol")])) > 500  # control: chol fed unscaled
    assert np.nanmax(np.abs(z)) <= 2.0  # every value in its spec range: within ±2 prior σ
    np.testing.assert_allclose(spec_prior(SPEC)[1][NAMES.index("chol")], (700 - 80) / 4)


# ---- 2. evaluation refusal -------------------------------------------------------------------


def _numbers(reason: str) -> set[str]:
    return set(re.findall(r"\d+", reason))


def test_one_patient_test_split_is_not_evaluated():
    """Review finding: split.test_fraction=0.005 made a test split whose loss was one patient's."""
    tiny = dataclasses.replace(SPEC, split=dataclasses.replace(SPEC.split, test_fraction=0.005))
    y = _site("cleveland", tiny).y_test

    reason = evaluation_refusal(y)

    assert len(y) <= 2 and reason.startswith("evaluation refused (too few test rows)")
    assert _numbers(reason) == {"50"}


def test_uci_sites_refused_or_evaluated_by_the_rule():
    """Switzerland's test split (37 rows, 2 negatives) is refused; the others are evaluated."""
    verdicts = {s: evaluation_refusal(_site(s).y_test) for s in SPEC.site_names}

    assert [s for s, v in verdicts.items() if v] == ["switzerland"]
    assert evaluation_refusal(_site("switzerland").y_test, min_rows=30).startswith(
        "evaluation refused (too few of one class)"
    )


@given(
    n_pos=st.integers(0, 120),
    n_neg=st.integers(0, 120),
    min_rows=st.integers(1, 100),
    min_cell=st.integers(1, 30),
)
def test_refusal_follows_the_rule_and_names_only_its_numbers(n_pos, n_neg, min_rows, min_cell):
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]

    reason = evaluation_refusal(y, min_rows=min_rows, min_cell=min_cell)

    assert (reason is None) == (n_pos + n_neg >= min_rows and min(n_pos, n_neg) >= min_cell)
    assert reason is None or _numbers(reason) <= {str(min_rows), str(min_cell)}


# ---- 3. score histograms ---------------------------------------------------------------------


def attacker_groups(pos: list[float], neg: list[float]) -> list[float]:
    """Patients in each run of bins an observer can tell apart (maximal runs of equal values)."""
    held, runs, last = 0.0, [], None
    for value in zip(pos, neg):
        if last is not None and not np.allclose(value, last, rtol=0, atol=1e-12):
            runs.append(held)
            held = 0.0
        held, last = held + sum(value), value
    return [round(n, 6) for n in [*runs, held] if n > 1e-9]  # patients are whole: float sums rounded


def _age_score(age: np.ndarray, low: float, width: float) -> np.ndarray:
    """A crafted model: risk is a function of age alone, one bin per 'width' years from 'low'."""
    return np.clip((age - low) / (width * HIST_BINS), 0.0, 1.0 - 1e-9)


def test_crafted_age_model_locates_no_single_uci_test_patient():
    """Review finding: a crafted model's histograms located single test patients' ages."""
    for name in SPEC.site_names:
        site = _site(name)
        risk = _age_score(site.x_test[:, NAMES.index("age")], 20.0, 1.0)  # one bin per year

        exact = np.add(*score_histograms(site.y_test, risk))
        released = attacker_groups(*released_score_histograms(site.y_test, risk))

        assert exact[exact > 0].min() == 1  # control: some patient is alone in an age bin
        assert min(released) >= 10
        assert sum(released) == pytest.approx(len(site.y_test))


@settings(max_examples=200, deadline=None)
@given(
    ages=st.lists(st.integers(18, 100), min_size=1, max_size=150),
    labels=st.data(),
    low=st.floats(0, 60),
    width=st.floats(0.05, 2.0),
    min_cell=st.integers(2, 25),
)
def test_no_released_group_holds_fewer_than_k_patients(ages, labels, low, width, min_cell):
    age = np.array(ages, dtype=float)
    y = np.array(labels.draw(st.lists(st.integers(0, 1), min_size=len(ages), max_size=len(ages))))

    pos, neg = released_score_histograms(y, _age_score(age, low, width), min_cell=min_cell)

    groups = attacker_groups(pos, neg)
    assert len(pos) == len(neg) == HIST_BINS
    assert sum(pos) == pytest.approx(y.sum()) and sum(neg) == pytest.approx(len(y) - y.sum())
    assert min(groups) >= min_cell or (len(groups) == 1 and len(y) < min_cell)
