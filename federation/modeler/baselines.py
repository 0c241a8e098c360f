"""What a hospital could do without the federation (local-only) and the pooled upper bound.

Both baselines use the run's own model, seed and optimiser, and train for the same number of
epochs a site trained in the federation (rounds × local epochs), in one go. With DP on, the
noise is calibrated so that this one training spends the run's ε target over its total
steps, exactly as each federated site's noise is (``federation.core.privacy.noise_for_run``); the pooled
model is then DP over the pooled rows. Simulation only: it needs every site's rows here.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, replace

import numpy as np

from client.site_randomness import SiteRandomness
from client.training import train_locally
from federation.core.data import SiteData
from federation.core.feature_stats import feature_statistics
from federation.core.model import ModelSpec, RiskModel, build_model
from federation.core.privacy import epsilon_spent, noise_for_run
from federation.core.settings import RunSettings

log = logging.getLogger(__name__)
_BASELINE_SEED_OFFSET = 7919  # keeps baseline batches apart from any federated round's


@dataclass(frozen=True)
class Baseline:
    """A model trained outside the federation and the ε its training spent (None: no DP)."""

    model: RiskModel
    epsilon: float | None
    n_train: int


def _reproducible_randomness(seed: int) -> SiteRandomness:
    """Baselines run on data the modeler already holds: their DP noise may be replayable, and
    is, so that a report can be regenerated (a site's training never uses this)."""
    return SiteRandomness(key=hashlib.sha256(f"lhsfed-baseline:{seed}".encode()).digest())


def train_baseline(settings: RunSettings, spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> Baseline:
    """One model on (x, y) for the federation's total epochs, with the run's DP settings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus accountant and hook chatter, once per batch
        model = build_model(spec, seed=settings.seed)
        model.preprocess.set_statistics(*feature_statistics(x))
        epochs = settings.rounds * settings.train.local_epochs
        noise = (
            noise_for_run(
                settings, len(y), delta=settings.privacy.delta, accountant=settings.privacy.accountant
            )
            if settings.privacy.enabled
            else None
        )
        steps = settings.rounds * settings.train.local_steps  # 0: epochs decide
        train = replace(settings.train, local_epochs=epochs, local_steps=steps)
        result = train_locally(
            model,
            x,
            y,
            train=train,
            privacy=settings.privacy,
            noise_multiplier=noise,
            seed=settings.seed * 1000 + _BASELINE_SEED_OFFSET,
            randomness=_reproducible_randomness(settings.seed),
        )
        epsilon = (
            epsilon_spent(
                result.history, delta=settings.privacy.delta, accountant=settings.privacy.accountant
            )
            if settings.privacy.enabled
            else None
        )
    model.eval()
    return Baseline(model, epsilon, len(y))


def local_only(settings: RunSettings, spec: ModelSpec, sites: list[SiteData]) -> dict[str, Baseline]:
    """Each site trains alone on its own training split."""
    models = {}
    for site in sites:
        log.info("training local-only baseline for %s", site.name)
        models[site.name] = train_baseline(settings, spec, site.x_train, site.y_train)
    return models


def pooled(settings: RunSettings, spec: ModelSpec, sites: list[SiteData]) -> Baseline:
    """One centralized model on every site's training rows together (the upper bound)."""
    log.info("training pooled centralized baseline")
    x = np.concatenate([s.x_train for s in sites])
    y = np.concatenate([s.y_train for s in sites])
    return train_baseline(settings, spec, x, y)
