"""Between-site heterogeneity: a random-effects meta-analysis of the sites' own estimates.

A multi-site validation reports how much a model's performance varies from hospital to
hospital, not only its pooled figure (TRIPOD-Cluster; Debray et al., BMJ 2017): the
random-effects summary with its 95 % confidence interval, the 95 % prediction interval for a
new site's value, τ² and I².

* AUROC is pooled on the logit scale, calibration slope on its own scale;
* each site's standard error comes from its own 95 % interval (``(hi − lo) / 2·1.96`` on the
  pooling scale), so whatever that interval holds (bootstrap, DP noise) is carried along;
* τ² by DerSimonian–Laird, the summary, its interval and I² by statsmodels'
  ``combine_effects`` (the library made for it), with τ² and I² truncated at 0 as the method
  defines them (metafor does; statsmodels leaves them negative when Q < k − 1, which would
  weight sites by more than their own precision);
* the prediction interval, which statsmodels does not give: summary ± t(k − 2) ·
  √(τ² + SE²), Higgins, Thompson & Spiegelhalter (J R Stat Soc A, 2009), needing k ≥ 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from federation.modeler.report_format import interval_of

Z95 = stats.norm.ppf(0.975)
# A site's AUROC or interval bound at exactly 0 or 1 has an infinite logit: held this far
# inside (0, 1) so one perfect small site contributes a large, finite variance instead.
LOGIT_EDGE = 1e-3


def _logit(p: float) -> float:
    p = min(max(p, LOGIT_EDGE), 1 - LOGIT_EDGE)
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _same(x: float) -> float:
    return x


@dataclass(frozen=True)
class Scale:
    """How a measure is pooled: to the pooling scale and back."""

    name: str
    forward: Callable[[float], float]
    back: Callable[[float], float]


LOGIT = Scale("logit", _logit, _expit)
IDENTITY = Scale("identity", _same, _same)
# measure key in evaluation.json -> (its interval's key(s), the scale it is pooled on)
MEASURES = {"auroc": LOGIT, "calibration_slope": IDENTITY}


def site_estimate(metrics: dict[str, Any], key: str) -> tuple[float, float, float] | None:
    """(estimate, low, high) of one site's measure, or None where it has no point or no interval."""
    value, interval = metrics.get(key), interval_of(metrics, key)
    if value is None or interval is None:
        return None
    if any(not math.isfinite(float(v)) for v in (value, *interval)):
        return None
    return float(value), float(interval[0]), float(interval[1])


def random_effects(estimates: dict[str, tuple[float, float, float]], scale: Scale) -> dict[str, Any]:
    """DerSimonian–Laird random-effects summary of per-site (estimate, 95 % low, high).

    Returns the summary and intervals on the measure's own scale, τ² on the pooling scale,
    I², Cochran's Q and its p-value, and each site's random-effects weight. Fewer than 2
    sites with an interval: ``{"k": k, "why": ...}`` and nothing pooled.
    """
    names = list(estimates)
    k = len(names)
    if k < 2:
        return {"k": k, "why": f"{k} site(s) with an estimate and an interval; a meta-analysis needs 2"}
    effect = np.array([scale.forward(estimates[n][0]) for n in names])
    se = np.array(
        [(scale.forward(estimates[n][2]) - scale.forward(estimates[n][1])) / (2 * Z95) for n in names]
    )
    result = combine_effects(effect, se**2, method_re="dl", row_names=names)
    tau2 = float(result.tau2)
    if tau2 > 0:
        mean, sd, weights = float(result.mean_effect_re), float(result.sd_eff_w_re), result.weights_rel_re
    else:  # DerSimonian–Laird's τ² is max(0, ·); statsmodels leaves it negative when Q < k − 1
        tau2 = 0.0
        mean, sd, weights = float(result.mean_effect_fe), float(result.sd_eff_w_fe), result.weights_rel_fe
    low, high = mean - Z95 * sd, mean + Z95 * sd
    if k >= 3:
        half = stats.t.ppf(0.975, k - 2) * math.sqrt(tau2 + sd**2)
        prediction = [scale.back(mean - half), scale.back(mean + half)]
    else:
        prediction = None
    return {
        "k": k,
        "scale": scale.name,
        "summary": scale.back(mean),
        "ci": [scale.back(low), scale.back(high)],
        "prediction_interval": prediction,
        "prediction_interval_why": None if prediction else "needs 3 or more sites (t with k − 2 df)",
        "tau2": tau2,
        "i2": max(0.0, float(result.i2)),
        "q": float(result.q),
        "q_p_value": float(stats.chi2.sf(result.q, k - 1)),
        "weights": dict(zip(names, map(float, weights))),
        "sites": {n: {"estimate": estimates[n][0], "se": float(s)} for n, s in zip(names, se)},
    }


def heterogeneity(sites: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per measure (AUROC, calibration slope): the random-effects summary over the sites, and the
    sites left out of it with why (no point estimate or no interval: too few, or withheld)."""
    found = {}
    for key, scale in MEASURES.items():
        estimates, left_out = {}, {}
        for site, metrics in sites.items():
            estimate = site_estimate(metrics, key)
            if estimate is None:
                reason = (metrics.get("not_estimable") or {}).get(key) or {}
                left_out[site] = reason.get("text") or "no estimate with an interval"
            elif scale.forward(estimate[2]) <= scale.forward(estimate[1]):
                left_out[site] = "its interval has no width (no standard error to weight it by)"
            else:
                estimates[site] = estimate
        found[key] = {**random_effects(estimates, scale), "left_out": left_out}
    return found
