"""The report's model specification (TRIPOD+AI item 12): each coefficient's odds ratio is per
the SD the run standardized a numeric predictor with, and for an indicator its presence vs
absence; a model=glm run's Wald errors give each odds ratio its interval."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import yaml

from federation.core.dataspec import parse_dataset_spec
from federation.core.model import ModelSpec, build_model
from federation.modeler.report_sections import ReportInputs, coefficients_table
from federation.modeler.run_loader import SavedModel

SPEC = parse_dataset_spec(
    yaml.safe_load((Path(__file__).parents[2] / "configs/data/uci_heart.yaml").read_text())
)
Z = 1.959963984540054


def _inputs(tmp_path, glm: dict | None) -> tuple[ReportInputs, list[str], np.ndarray, np.ndarray]:
    names = SPEC.encoded_feature_names()
    model = build_model(ModelSpec("logreg", len(names), hidden=0))
    weights = np.linspace(-0.5, 0.5, 2 * len(names))
    std = np.where([n in ("age", "chol") for n in names], 20.0, 0.5)
    with torch.no_grad():
        model.head[0].weight.copy_(torch.as_tensor(weights[None, :], dtype=torch.float32))
        model.preprocess.set_statistics(np.zeros(len(names)), std)
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    saved = SavedModel(model, model.spec, SPEC, names, 3, path)
    evaluation = {"sites": {}, "data": {}, "privacy": {"enabled": False}, "threshold": 0.5}
    return ReportInputs(evaluation, {}, saved, {}, glm, None), names, weights, std


def _row(table, term):
    return next(row for row in table.rows if row[0] == term)


def test_odds_ratios_per_sd_for_numbers_and_per_presence_for_indicators(tmp_path):
    inputs, names, weights, std = _inputs(tmp_path, None)
    table = coefficients_table(inputs)

    age, sex = names.index("age"), names.index("sex")
    w_age, w_sex = float(np.float32(weights[age])), float(np.float32(weights[sex]))
    assert _row(table, "age")[1:3] == [f"{w_age:.3f}", f"{math.exp(w_age):.3f}"]
    assert _row(table, "age")[4] == "per 20.000 years"
    assert (
        _row(table, "sex")[2] == f"{math.exp(w_sex / 0.5):.3f}"
        and _row(table, "sex")[4] == "present vs absent"
    )
    assert _row(table, "age")[3] == "n/a" and "no intervals" in table.note


def test_a_glm_run_gives_each_odds_ratio_its_wald_interval(tmp_path):
    names = SPEC.encoded_feature_names()
    columns = ["intercept", *names, *(f"{n} missing" for n in names)]
    errors = [0.1] * len(columns)
    coefficients = np.linspace(-0.5, 0.5, len(columns))
    glm = {"columns": columns, "selected_coefficients": coefficients.tolist(), "standard_errors": errors}
    inputs, _, _, _ = _inputs(tmp_path, glm)
    table = coefficients_table(inputs)

    b_age, b_sex = coefficients[columns.index("age")], coefficients[columns.index("sex")]
    age_ci = [math.exp(b_age - Z * 0.1), math.exp(b_age + Z * 0.1)]
    sex_ci = [math.exp((b_sex - Z * 0.1) / 0.5), math.exp((b_sex + Z * 0.1) / 0.5)]
    assert _row(table, "age")[3] == f"[{age_ci[0]:.3f}, {age_ci[1]:.3f}]"
    assert _row(table, "sex")[3] == f"[{sex_ci[0]:.3f}, {sex_ci[1]:.3f}]"
    assert "Wald" in table.note


def test_intended_use_threshold_rationale_and_limitations_come_from_the_run_config(tmp_path):
    from dataclasses import replace

    from federation.modeler.report_sections import fill_in_table, limitations_table, outcome_table

    inputs, _, _, _ = _inputs(tmp_path, None)
    empty = {row[0]: row[1] for row in fill_in_table(inputs).rows}
    given = replace(
        inputs,
        config={"report": {"intended_use": "triage of chest-pain referrals", "limitations": "no women <40"}},
    )
    filled = {row[0]: row[1] for row in fill_in_table(given).rows}

    assert empty["Intended use"] == "not stated (set report.intended_use in the run config)"
    assert filled["Intended use"] == "triage of chest-pain referrals"
    assert filled["Threshold rationale"].startswith("not stated")
    assert ["stated by the modeler", "no women <40"] in limitations_table(given).rows
    outcome = {row[0]: row[1] for row in outcome_table(inputs).rows}
    assert outcome["definition"].startswith("angiographic coronary artery disease")
    assert outcome["horizon"].startswith("present at the time of angiography")
    assert outcome["label"] == "num in {1, 2, 3, 4} vs {0}"
