"""model=glm's arithmetic (federation.core.glm) and config boundary, without a federation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from federation.coordinator.inprocess import run_config_for
from federation.core.errors import ConfigError
from federation.core.glm import NewtonFit, design_matrix, head_state, parse_grid, site_sums
from federation.core.model import ModelSpec, build_model
from federation.core.settings import GLM_ONLY_WITHOUT_DP, RunSettings, model_spec


def _cohort(rng, n=300, d=6, separation=100.0):
    """Three "sites" of a nearly separable cohort with missing values (plain Newton overshoots)."""
    x = rng.normal(size=(n, d))
    y = (x[:, 0] * separation + rng.normal(size=n) > 0).astype(int)
    x[rng.random((n, d)) < 0.1] = np.nan
    return x, y, np.array_split(np.arange(n), 3)


def test_newton_on_summed_site_statistics_is_the_pooled_sklearn_fit():
    rng = np.random.default_rng(0)
    x, y, sites = _cohort(rng)
    mean, std = np.nanmean(x, axis=0).astype(np.float32), np.nanstd(x, axis=0).astype(np.float32)
    lambdas = parse_grid("0.0001,0.1,10")
    fit = NewtonFit(lambdas, width=1 + 2 * x.shape[1], tolerance=1e-10)
    for _ in range(50):
        parts = [site_sums(design_matrix(mean, std, x[i]), y[i], fit.coefficients) for i in sites]
        if fit.update(*(np.sum([p[k] for p in parts], axis=0) for k in ("gradient", "hessian", "loss"))):
            break
    assert fit.converged and fit.halvings > 0  # λ = 1e-4 overshoots once: the damping is exercised
    design = design_matrix(mean, std, x)
    for lam, coefficients in zip(lambdas, fit.coefficients):
        ref = LogisticRegression(C=1 / lam, solver="newton-cholesky", tol=1e-12, max_iter=1000)
        ref.fit(design[:, 1:], y)
        assert np.abs(coefficients - np.r_[ref.intercept_, ref.coef_[0]]).max() < 1e-6, lam


def test_design_matrix_and_head_are_the_logreg_models_own():
    """The same inputs the logreg head sees (plus the intercept), and the coefficients load as
    its head: the model's risk is sigmoid(design @ w)."""
    rng = np.random.default_rng(1)
    x, _, _ = _cohort(rng, n=50, d=4)
    model = build_model(ModelSpec("logreg", 4, hidden=0))
    model.preprocess.set_statistics(np.nanmean(x, axis=0), np.nanstd(x, axis=0))
    design = design_matrix(model.preprocess.mean, model.preprocess.std, x)
    with torch.no_grad():
        seen = model.preprocess(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(design[:, 1:] - seen).max() < 1e-5 and (design[:, 0] == 1).all()
    w = rng.normal(size=9)
    model.load_state_dict({**model.state_dict(), **head_state(w)})
    with torch.no_grad():
        risk = torch.sigmoid(model(torch.as_tensor(x, dtype=torch.float32))).numpy()
    assert np.abs(risk - 1 / (1 + np.exp(-design @ w))).max() < 1e-5


def test_glm_is_refused_under_dp_with_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        RunSettings.from_run_config(run_config_for(["model=glm"], tmp_path))
    assert str(err.value) == GLM_ONLY_WITHOUT_DP


def test_glm_settings_grid_and_model_spec(tmp_path):
    settings = RunSettings.from_run_config(
        run_config_for(["model=glm", "privacy=off", "model.l2_grid=[0.5,2]"], tmp_path)
    )
    assert parse_grid(settings.model.l2_grid).tolist() == [0.5, 2.0]
    assert model_spec(settings).name == "logreg"  # a glm fit is handed out as a logreg model
    for bad in ("model.l2_grid=[0,1]", "model.tolerance=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            RunSettings.from_run_config(run_config_for(["model=glm", "privacy=off", bad], tmp_path))
