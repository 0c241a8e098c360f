"""Per-site personalization of the selected global model, after the federation (issue N.4).

``personalize=recalibrate`` fits Platt scaling (a logistic regression of the label on the
model's logit) on the site's VALIDATION rows; ``personalize=finetune`` takes
``personalize_steps`` local DP-SGD steps from the global model on its TRAINING rows. Either
way the personalized model stays at the site (:func:`personalized_path`, never sent) and the
site replies with the TEST-split metrics of the global and of the personalized model only.

Privacy: recalibration spends no ε. The two Platt numbers never leave the site; what leaves is
test-split metrics (AUROC with its CI, calibration slope/intercept, Brier) under the same
release rules as ``evaluate`` (refused under ``min_eval_rows`` or a class under the site's
minimum cell size k), so the fit on validation rows is released only through aggregates of
the test rows, as evaluate's validation metrics already are. Fine-tuning is DP-SGD: its steps
are planned into the run's noise (``federation.core.privacy.fine_tuning_steps``) and reserved
in the site's ledger before any step (:meth:`client.budget.SiteBudget.reserve_fine_tuning`).
"""

from __future__ import annotations

import copy
import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from client.budget import SiteBudget
from client.releases import evaluation_refusal
from client.site_errors import EvaluationRefused
from client.site_policy import SitePolicy
from client.site_randomness import SiteRandomness
from client.site_state import run_key, state_dir
from client.training import train_locally
from federation.core import atomic, wire
from federation.core.data import SiteData
from federation.core.metrics import site_wire_metrics
from federation.core.model import build_model, predict_risk, unwrapped_state_dict
from federation.core.safe_load import load_weights_only
from federation.core.settings import RunSettings, model_spec

log = logging.getLogger(__name__)
_EPS = 1e-7
NOT_RECORDED = "this site personalizes only a model it was sent as this run's global model"
ONCE_PER_RUN = "this site personalizes once per run: it keeps the model it made"


@dataclass(frozen=True)
class Personalized:
    """A site's own model: the (fine-tuned) weights and, for recalibrate, Platt's (a, b)."""

    mode: str
    model: torch.nn.Module
    platt: tuple[float, float] | None = None  # risk = sigmoid(a + b * logit)

    def risk(self, x: np.ndarray) -> np.ndarray:
        p = predict_risk(self.model, x)
        if self.platt is None:
            return p
        a, b = self.platt
        return 1.0 / (1.0 + np.exp(-(a + b * _logit(p))))


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(clipped / (1 - clipped))


def platt_fit(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(a, b) of logit P(y=1) = a + b · logit(p), unpenalized (scikit-learn)."""
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p).reshape(-1, 1), np.asarray(y, dtype=int))
    return float(fit.intercept_[0]), float(fit.coef_[0, 0])


def trained_refusal(budget: SiteBudget, settings: RunSettings) -> str | None:
    """A site personalizes only the model of a run it trained in (its ledger says so)."""
    entries = budget.ledger.entries(budget.run)
    if any(1 <= e.server_round <= settings.rounds for e in entries):
        return None
    return "site did not train in this run: nothing to personalize"


def recalibrate(model: torch.nn.Module, data: SiteData, policy: SitePolicy) -> Personalized:
    """Platt scaling on the validation rows (refused if they are too few to fit on)."""
    too_small = evaluation_refusal(
        data.y_val,
        min_rows=policy.min_eval_rows,
        min_cell=policy.min_cell_size,
        split="validation",
        action="recalibration",
    )
    if too_small:
        raise EvaluationRefused(too_small)
    return Personalized("recalibrate", model, platt_fit(data.y_val, predict_risk(model, data.x_val)))


def fine_tune(
    model: torch.nn.Module, data: SiteData, settings: RunSettings, budget: SiteBudget
) -> tuple[Personalized, dict[str, float]]:
    """``personalize_steps`` DP-SGD steps on the training rows, reserved in the ledger first."""
    noise = budget.fine_tuning_noise(settings)
    planned = budget.reserve_fine_tuning(settings, noise)
    tuned = copy.deepcopy(model)
    train = replace(settings.train, local_steps=settings.personalize_steps)
    result = train_locally(
        tuned,
        data.x_train,
        data.y_train,
        train=train,
        privacy=settings.privacy,
        noise_multiplier=noise,
        seed=settings.seed * 1000 + settings.rounds + 1,  # seed: DP off only
    )
    clean = copy.deepcopy(model)  # the tuned weights without Opacus's hooks
    clean.load_state_dict(unwrapped_state_dict(tuned))
    if settings.privacy.enabled and result.steps != planned[-1].steps:
        log.error("fine-tuning took %s DP steps, %s were reserved", result.steps, planned[-1].steps)
    spend = {
        wire.STEPS: planned[-1].steps,
        wire.EPSILON: planned[-1].epsilon_run,
        wire.SITE_EPSILON: planned[-1].epsilon_total,
        wire.NOISE_MULTIPLIER: noise or 0.0,
    }
    return Personalized("finetune", clean), spend


def personalized_path(policy: SitePolicy, run_identity: str) -> Path:
    """Where this site keeps its personalized model of one run (beside its ledger)."""
    return state_dir(policy) / "personalized" / f"{run_key(run_identity)}.pt"


def save_personalized(path: Path, personalized: Personalized, run_identity: str) -> bool:
    """Plain tensors and numbers only, so ``lhsfed predict --personalized`` loads it weights-only.

    Never overwrites: False if ``path`` exists (its model is kept as it was).
    """
    buffer = io.BytesIO()
    torch.save(
        {
            "mode": personalized.mode,
            "run": run_identity,
            "state_dict": unwrapped_state_dict(personalized.model),
            "platt": list(personalized.platt) if personalized.platt else [],
        },
        buffer,
    )
    return atomic.create_bytes(path, buffer.getvalue())


def check_test_split(data: SiteData, policy: SitePolicy) -> None:
    """Refuse to release metrics of a test split too small for the site's rules (the
    personalized model is kept all the same: the site uses it, it just says nothing of it)."""
    too_small = evaluation_refusal(data.y_test, min_rows=policy.min_eval_rows, min_cell=policy.min_cell_size)
    if too_small:
        raise EvaluationRefused(f"personalized model kept at the site, metrics not released: {too_small}")


def compared_metrics(
    data: SiteData, policy: SitePolicy, global_model: torch.nn.Module, personalized: Personalized
) -> dict[str, float]:
    """Test-split metrics of both models under the wire prefixes (the only rows scored)."""
    check_test_split(data, policy)
    seed = SiteRandomness().seed()  # one secret seed: both CIs from the same resamples
    out: dict[str, float] = {wire.N_TEST: len(data.y_test)}
    for prefix, risk in (
        (wire.GLOBAL_PREFIX, predict_risk(global_model, data.x_test)),
        (wire.PERSONALIZED_PREFIX, personalized.risk(data.x_test)),
    ):
        metrics = site_wire_metrics(data.y_test, risk, min_cell=policy.min_cell_size, with_ci=True, seed=seed)
        out.update({prefix + key: metrics[key] for key in wire.PERSONALIZE_METRICS})
    return out


def load_personalized(path: Path, settings: RunSettings) -> Personalized:
    """A site's kept personalized model (weights-only load: nothing in the file runs)."""
    saved = load_weights_only(path, fix="re-run the federation with personalize=recalibrate|finetune")
    model = build_model(model_spec(settings), seed=settings.seed)
    model.load_state_dict(saved["state_dict"])
    platt = tuple(float(v) for v in saved.get("platt") or ()) or None
    return Personalized(str(saved.get("mode", "")), model, platt)  # type: ignore[arg-type]
