"""Pooled test scores of a model, and the baselines a statistician or a lone hospital would fit.

Scores are computed here from the sites' test rows (the simulation holds them), so every number
in the quality table is one formula over real predictions: AUROC, AUPRC and the calibration
slope (``federation.core.metrics``) of the pooled test rows of every site.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from federation.core.data import SiteData
from federation.core.metrics import calibration_slope_intercept
from federation.core.model import predict_risk
from federation.core.settings import RunSettings, model_spec
from federation.modeler.baselines import train_baseline


def pooled_scores(y: np.ndarray, risk: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC and calibration slope of pooled predictions."""
    slope, _ = calibration_slope_intercept(y, risk)
    return {
        "auroc": float(roc_auc_score(y, risk)),
        "auprc": float(average_precision_score(y, risk)),
        "slope": slope,
    }


def _test(sites: list[SiteData]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([s.x_test for s in sites]), np.concatenate([s.y_test for s in sites])


def fit_rows(site: SiteData) -> tuple[np.ndarray, np.ndarray]:
    """A site's training and validation rows together (what a pooled baseline may fit on)."""
    x_val = getattr(site, "x_val", None)
    if x_val is None or len(x_val) == 0:
        return site.x_train, site.y_train
    return np.concatenate([site.x_train, x_val]), np.concatenate([site.y_train, site.y_val])


def model_scores(model, sites: list[SiteData]) -> dict[str, float]:
    x, y = _test(sites)
    return pooled_scores(y, predict_risk(model, x))


def pooled_logistic_regression(sites: list[SiteData], seed: int) -> dict[str, float]:
    """sklearn ``LogisticRegressionCV`` (5-fold, L2) on every site's train+validation rows
    pooled, with mean imputation, missing indicators and standardization, as a statistician
    would fit it; scored on the pooled test rows."""
    parts = [fit_rows(s) for s in sites]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    keep = ~np.isnan(x).all(0)  # a column no training row records carries nothing
    fit = make_pipeline(
        SimpleImputer(strategy="mean", add_indicator=True),
        StandardScaler(),
        LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=2000, random_state=seed),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit.fit(x[:, keep], y)
    x_test, y_test = _test(sites)
    return pooled_scores(y_test, fit.predict_proba(x_test[:, keep])[:, 1])


def local_only(settings: RunSettings, sites: list[SiteData]) -> dict[str, float]:
    """Each hospital alone: the run's recipe (DP off) on its own training rows, for the
    federation's total epochs; each scored on its own test rows, then pooled."""
    plain = replace(settings, privacy=replace(settings.privacy, enabled=False))
    spec = model_spec(settings)
    ys, risks = [], []
    for site in sites:
        baseline = train_baseline(plain, spec, site.x_train, site.y_train)
        ys.append(site.y_test)
        risks.append(predict_risk(baseline.model, site.x_test))
    return pooled_scores(np.concatenate(ys), np.concatenate(risks))
