"""Acceptance 1 of issue N: a subgroup whose outcome relation differs shows a calibration gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from client.subgroups import site_subgroups
from federation.core.data import encode_features, encode_labels
from federation.core.dataspec import parse_dataset_spec
from federation.modeler.synth import CohortOptions, cohorts, dataset_spec


def _gaps(shift: float) -> dict:
    """One synth hospital; a main-effects logistic model fitted to half its rows (as a
    global model is: one coefficient per feature, no interaction); the site's subgroup
    release on the other half."""
    raw = dataset_spec("synth", {"h": "h.parquet"}, subgroups=True)
    raw["features"][0].pop("subgroup_bins")  # age bands: not needed here (time)
    spec = parse_dataset_spec(raw)
    ((_, frame),) = cohorts(1, 8000, 0.0, seed=5, options=CohortOptions(subgroup_shift=shift, min_rows=8000))
    x, y = encode_features(frame, spec, Path("h.parquet")), encode_labels(frame, spec, Path("h.parquet"))
    x_filled = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    train, test = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    model = LogisticRegression(max_iter=2000).fit(x_filled[train], y[train])
    risk = model.predict_proba(x_filled[test])[:, 1]
    found = site_subgroups(x[test], y[test], risk, spec, min_cell=10, threshold=0.2, seed=1)
    return {feature: found[feature]["gaps"] for feature in ("diabetes", "sex")}


def _excludes_zero(gaps: dict, name: str) -> bool:
    return gaps[f"{name}_ci_low"] > 0 or gaps[f"{name}_ci_high"] < 0


def test_shifted_subgroup_has_a_calibration_slope_gap_whose_ci_excludes_zero_and_sex_not():
    gaps = _gaps(shift=2.5)
    assert _excludes_zero(gaps["diabetes"], "slope_gap"), gaps["diabetes"]
    assert not _excludes_zero(gaps["sex"], "slope_gap"), gaps["sex"]


def test_control_without_the_shift_diabetes_shows_no_calibration_slope_gap():
    gaps = _gaps(shift=1.0)
    assert not _excludes_zero(gaps["diabetes"], "slope_gap"), gaps["diabetes"]
