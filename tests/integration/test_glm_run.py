"""model=glm (issue Q, acceptance 1): without DP its coefficients equal sklearn's pooled
``LogisticRegression`` on the same design matrix within 1e-6, on uci_heart and a synth cohort;
the FedAvg-SGD logreg of the same data does not. In process (no Ray), a few seconds each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from client.ledger import open_site_ledger
from client.site_policy import simulated_policy
from tests.helpers.glm_runs import handed_out, inprocess_run, pooled_design, pooled_sklearn
from tests.helpers.runs import read_json
from tests.helpers.synth_run import write_synth_cohort

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def glm_heart(tmp_path_factory):
    """The default federation (4 UCI hospitals), model=glm privacy=off."""
    run = tmp_path_factory.mktemp("glm_heart") / "run"
    inprocess_run(run, ["model=glm", "privacy=off"], num_nodes=4)
    return run, None


@pytest.fixture(scope="module")
def glm_synth(tmp_path_factory):
    """tests/helpers/synth_run's cohort (3 hospitals, missing values, text levels), model=glm."""
    root = tmp_path_factory.mktemp("glm_synth")
    write_synth_cohort(root / "data")
    inprocess_run(root / "run", ["model=glm", "privacy=off"], num_nodes=3, data=root / "data")
    return root / "run", root / "data"


@pytest.mark.parametrize("cohort", ["glm_heart", "glm_synth"])
def test_glm_equals_pooled_sklearn_logistic_regression(cohort, request):
    """Every λ of the grid within 1e-6 of sklearn at C = 1/λ; the λ handed out is the one of
    lowest pooled validation loss, and model.pt's head is its coefficients (float32)."""
    run, data = request.getfixturevalue(cohort)
    glm = read_json(run / "glm.json")
    x, y = pooled_design(run, data)
    assert glm["converged"] and glm["rounds"] <= 10
    for lam, c, coefficients in zip(glm["lambdas"], glm["C"], glm["coefficients"]):
        assert c == 1.0 / lam
        reference = pooled_sklearn(x, y, c)
        assert np.abs(np.array(coefficients) - reference).max() < 1e-6, lam
    chosen = int(np.argmin(glm["validation_loss"]))
    assert glm["selected_lambda"] == glm["lambdas"][chosen]
    selected = np.array(glm["coefficients"][chosen])
    assert np.abs(handed_out(run) - selected).max() < 1e-6
    assert np.abs(handed_out(run) - pooled_sklearn(x, y, glm["selected_C"])).max() < 1e-6


def test_glm_run_is_a_logreg_run_with_exact_releases_in_the_ledgers(glm_heart):
    """The run folder a DP-off logreg run has (its model a logreg, evaluated exactly once, the
    round handed out the last), and every glm round an exact release in each site's ledger."""
    run, _ = glm_heart
    summary, glm = read_json(run / "summary.json"), read_json(run / "glm.json")
    rounds = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert summary["selection"]["round"] == rounds[-1]["round"] == glm["rounds"]
    assert summary["glm"]["selected_C"] == glm["selected_C"] and summary["privacy"]["enabled"] is False
    assert summary["metrics"]["pooled"]["auroc"] > 0.85  # exact: the sites' test rows
    assert rounds[-1]["validation"]["pooled"]["loss"] == pytest.approx(min(glm["validation_loss"]), abs=1e-6)
    assert all(not r["evaluate"]["sites"] for r in rounds[:-1])
    for site in summary["privacy"]["sites"]:
        ledger = open_site_ledger(simulated_policy(site, run_folder=run), site)
        glm_rows = [e for e in ledger.entries() if e.release.startswith("glm sums")]
        assert [e.server_round for e in glm_rows] == list(range(1, glm["rounds"] + 1))
        assert all(e.accountant_step[0] == 0.0 for e in glm_rows)  # exact: z = 0, no finite ε


def test_fedavg_sgd_logreg_is_not_the_pooled_fit(glm_heart, nodp_run):
    """Control: the default recipe's FedAvg-SGD logreg without DP (same data, same federated
    standardization) is more than 1e-3 from the pooled optimum at the C glm chose."""
    c = read_json(glm_heart[0] / "glm.json")["selected_C"]
    x, y = pooled_design(nodp_run)
    assert np.abs(handed_out(nodp_run) - pooled_sklearn(x, y, c)).max() > 1e-3


def test_glm_standard_errors_are_the_pooled_penalized_hessians(glm_heart):
    """glm.json's Wald errors (the report's odds-ratio intervals) equal √diag((XᵀWX + λP)⁻¹)
    computed here from sklearn's pooled fit on the pooled training rows."""
    run, data = glm_heart
    glm = read_json(run / "glm.json")
    x, y = pooled_design(run, data)
    beta = pooled_sklearn(x, y, glm["selected_C"])
    p = 1 / (1 + np.exp(-(x @ beta)))
    penalty = glm["selected_lambda"] * np.diag([0.0] + [1.0] * (x.shape[1] - 1))
    reference = np.sqrt(np.diag(np.linalg.inv((x * (p * (1 - p))[:, None]).T @ x + penalty)))

    assert np.allclose(glm["standard_errors"], reference, rtol=1e-5, atol=1e-9)
    assert np.abs(np.array(glm["selected_coefficients"]) - beta).max() < 1e-6
