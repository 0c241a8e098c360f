"""A site's side of ``lhsfed compare``: two models on its current test rows, as aggregates only.

The coordinator is not trusted, so the site answers only for two models it was itself sent
as global models in runs it trained in (:mod:`client.model_record`), and only if its test
split passes the same release rule as ``evaluate`` (:func:`client.releases.evaluation_refusal`).
It releases, per model, AUROC, calibration slope and intercept, ECE and k-bounded score
histograms, and the AUROC difference (challenger − champion) with a paired bootstrap CI:
both models are scored on the same resampled rows, so the CI is of the difference, not two
overlapping intervals. The resamples are drawn from the site's own CSPRNG seed: resamples the
coordinator could replay would let it relate the CI bounds to individual test rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from client.releases import evaluation_refusal, released_score_histograms
from federation.core import wire
from federation.core.metrics import (
    BOOTSTRAP_CHUNK_DRAWS,
    BOOTSTRAP_RESAMPLES,
    CI_LEVEL,
    bootstrap_aurocs,
    calibration_slope_intercept,
    expected_calibration_error,
)
from federation.core.model import ModelSpec, RiskModel
from federation.core.settings import MAX_HIDDEN

NOT_SENT = (
    "this site compares only global models it was itself sent in a run it trained in (the {which} was not)"
)


def model_refusal(champion_sent: bool, challenger_sent: bool) -> str | None:
    """Why the two models are not compared here (None: both were sent to this site)."""
    if not champion_sent:
        return NOT_SENT.format(which="champion")
    if not challenger_sent:
        return NOT_SENT.format(which="challenger")
    return None


def checked_spec(text: str, shapes: Mapping[str, tuple[int, ...]]) -> ModelSpec:
    """The coordinator's model-spec JSON, checked against the arrays' shapes before any model
    is built: the spec's parameter shapes come from a model on torch's ``meta`` device (no
    memory), so a spec asking for a huge layer is refused without allocating it.

    Raises ``ValueError`` (or ``TypeError`` for fields of the wrong kind) if it does not fit.
    """
    spec = ModelSpec(**json.loads(text))
    if not 0 <= int(spec.hidden) <= MAX_HIDDEN:
        raise ValueError(f"hidden must be in 0..{MAX_HIDDEN}")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in RiskModel(spec).state_dict().items()}
    if expected != {k: tuple(v) for k, v in shapes.items()}:
        raise ValueError("the spec's shapes are not the arrays' shapes")
    return spec


def split_refusal(y_test: np.ndarray, *, min_rows: int, min_cell: int) -> str | None:
    """``evaluate``'s release rule on the test split, worded as the rule only."""
    refusal = evaluation_refusal(y_test, min_rows=min_rows, min_cell=min_cell)
    if refusal is None:
        return None
    return refusal.removeprefix("evaluation refused ").replace("(", "", 1).replace(")", "", 1)


def paired_auroc_difference(
    y: np.ndarray,
    p_champion: np.ndarray,
    p_challenger: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int,
) -> tuple[float, float, float]:
    """AUROC(challenger) − AUROC(champion) and its percentile-bootstrap CI.

    Each resample draws one set of rows and scores both models on it (resamples drawing one
    class are skipped, as ``auroc_with_ci`` skips them); drawn in chunks of ~1M draws.
    """
    y = np.asarray(y, dtype=int)
    difference = float(roc_auc_score(y, p_challenger) - roc_auc_score(y, p_champion))
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CHUNK_DRAWS // len(y))
    parts = []
    for start in range(0, resamples, chunk):
        draws = rng.integers(0, len(y), size=(min(chunk, resamples - start), len(y)))
        parts.append(bootstrap_aurocs(y, p_challenger, draws) - bootstrap_aurocs(y, p_champion, draws))
    boot = np.concatenate(parts)
    boot = boot[~np.isnan(boot)]
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return difference, float(low), float(high)


def model_scores(y: np.ndarray, p: np.ndarray, *, min_cell: int, prefix: str) -> dict:
    """One model's released metrics on the test rows, under ``prefix`` + wire key."""
    y = np.asarray(y, dtype=int)
    slope, intercept = calibration_slope_intercept(y, p)
    pos, neg = released_score_histograms(y, p, min_cell=min_cell)
    values = {
        wire.AUROC: float(roc_auc_score(y, p)),
        wire.CALIBRATION_SLOPE: slope,
        wire.CALIBRATION_INTERCEPT: intercept,
        wire.ECE: expected_calibration_error(y, p),
        wire.SCORE_HIST_POS: pos,
        wire.SCORE_HIST_NEG: neg,
    }
    return {prefix + key: value for key, value in values.items()}


def comparison_metrics(
    y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray, *, min_cell: int, seed: int
) -> dict:
    """Everything the compare reply carries: n-test, both models' scores, the paired difference."""
    difference, low, high = paired_auroc_difference(y, p_champion, p_challenger, seed=seed)
    return {
        wire.N_TEST: len(y),
        **model_scores(y, p_champion, min_cell=min_cell, prefix=wire.CHAMPION_PREFIX),
        **model_scores(y, p_challenger, min_cell=min_cell, prefix=wire.CHALLENGER_PREFIX),
        wire.AUROC_DIFFERENCE: difference,
        wire.DIFFERENCE_CI_LOW: low,
        wire.DIFFERENCE_CI_HIGH: high,
    }
