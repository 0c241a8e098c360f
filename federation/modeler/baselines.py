"""What a hospital could do without the federation (local-only) and the pooled upper bound.

Both baselines use the run's own model, seed and optimiser, and are matched to what the
federation did for the model it handed out (:class:`Match`), not to its plan: they train the
epochs of the rounds up to that round (rounds × local epochs), in one go, and with DP on their
noise is calibrated so that this training spends the ε the sites' training had spent by that
round (each local-only model its site's; the pooled model the largest), from the sites' own
round records (noise, sample rate, steps). Planned epochs and the full ε target gave the
baselines more training and more ε than the model they were compared with (issue T.7: ε 2.997
against a model handed out at round 5 of a run stopped at 8). Simulation only: it needs every
site's rows here.
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
from federation.core.privacy import (
    calibrate_noise,
    epsilon_spent,
    noise_for_run,
    planned_steps,
    sample_rate,
)
from federation.core.records import RoundRecord
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


@dataclass(frozen=True)
class Match:
    """What the baselines are matched to: the federation's rounds up to the model handed out,
    and per site the (ε, δ) of its training by then (empty: DP off, or no round records, when
    the run's planned noise is used for those rounds instead)."""

    rounds: int
    spent: dict[str, tuple[float, float]]

    def to_json(self, settings: RunSettings) -> dict:
        return {
            "rounds": self.rounds,
            "rounds_planned": settings.rounds,
            "epochs": self.rounds * settings.train.local_epochs,
            "local_steps_per_round": settings.train.local_steps,
            "site_training_epsilon": {site: eps for site, (eps, _) in self.spent.items()} or None,
            "site_delta": {site: delta for site, (_, delta) in self.spent.items()} or None,
        }

    def pooled(self) -> tuple[float, float] | None:
        """The pooled model's (ε, δ): the largest site ε, at the smallest site δ (one model, one
        budget: no less ε than any site's training had, at no weaker δ)."""
        if not self.spent:
            return None
        return max(eps for eps, _ in self.spent.values()), min(delta for _, delta in self.spent.values())


_TRAIN_KEYS = ("noise_multiplier", "sample_rate", "steps", "delta")


def training_spent(
    records: list[RoundRecord], up_to: int, *, accountant: str
) -> dict[str, tuple[float, float]]:
    """Each site's (ε, δ) of its DP-SGD steps in rounds 1..``up_to``, at its own δ: from its
    records' noise multiplier, sample rate and ``steps`` (the run's steps so far, so a round's
    are the increase); releases left out, as a baseline releases nothing."""
    history: dict[str, list[tuple[float, float, int]]] = {}
    done: dict[str, int] = {}
    delta: dict[str, float] = {}
    for record in sorted(records, key=lambda r: r.round):
        if record.round > up_to:
            break
        for site, train in record.train.items():
            if any(train.get(k) is None for k in _TRAIN_KEYS):
                continue
            steps = int(train["steps"]) - done.get(site, 0)
            if steps > 0:
                history.setdefault(site, []).append(
                    (float(train["noise_multiplier"]), float(train["sample_rate"]), steps)
                )
            done[site], delta[site] = int(train["steps"]), float(train["delta"])
    return {
        site: (epsilon_spent(h, delta=delta[site], accountant=accountant), delta[site])
        for site, h in history.items()
    }


def match(settings: RunSettings, records: list[RoundRecord], handed_out: int) -> Match:
    """The baselines' :class:`Match` for the model of round ``handed_out``."""
    if not settings.privacy.enabled:
        return Match(handed_out, {})
    return Match(handed_out, training_spent(records, handed_out, accountant=settings.privacy.accountant))


def _noise(settings: RunSettings, n: int, rounds: int, budget: tuple[float, float] | None) -> float | None:
    """σ that spends ``budget`` (ε, δ) over ``rounds`` rounds' steps on ``n`` rows; without a
    matched budget, the run's planned σ (those rounds then spend what the plan had by them)."""
    if not settings.privacy.enabled:
        return None
    privacy, t = settings.privacy, settings.train
    if budget is None:
        return noise_for_run(settings, n, delta=privacy.delta, accountant=privacy.accountant)
    steps = planned_steps(
        n_train=n,
        batch_size=t.batch_size,
        local_epochs=t.local_epochs,
        rounds=rounds,
        local_steps=t.local_steps,
    )
    return calibrate_noise(
        target_epsilon=budget[0],
        delta=budget[1],
        rate=sample_rate(n_train=n, batch_size=t.batch_size),
        steps=steps,
        accountant=privacy.accountant,
    )


def train_baseline(
    settings: RunSettings,
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    *,
    rounds: int | None = None,
    budget: tuple[float, float] | None = None,
) -> Baseline:
    """One model on (x, y) for ``rounds`` rounds' epochs (None: the run's planned rounds, as
    the benchmarks train), with the run's DP settings at ``budget`` (ε, δ; its spent ε is
    reported at that δ)."""
    rounds = settings.rounds if rounds is None else rounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus accountant and hook chatter, once per batch
        model = build_model(spec, seed=settings.seed)
        model.preprocess.set_statistics(*feature_statistics(x))
        epochs = rounds * settings.train.local_epochs
        noise = _noise(settings, len(y), rounds, budget)
        delta = budget[1] if budget else settings.privacy.delta
        steps = rounds * settings.train.local_steps  # 0: epochs decide
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
            epsilon_spent(result.history, delta=delta, accountant=settings.privacy.accountant)
            if settings.privacy.enabled
            else None
        )
    model.eval()
    return Baseline(model, epsilon, len(y))


def local_only(
    settings: RunSettings, spec: ModelSpec, sites: list[SiteData], matched: Match
) -> dict[str, Baseline]:
    """Each site trains alone on its own training split, at its own matched ε."""
    models = {}
    for site in sites:
        log.info("training local-only baseline for %s", site.name)
        models[site.name] = train_baseline(
            settings,
            spec,
            site.x_train,
            site.y_train,
            rounds=matched.rounds,
            budget=matched.spent.get(site.name),
        )
    return models


def pooled(settings: RunSettings, spec: ModelSpec, sites: list[SiteData], matched: Match) -> Baseline:
    """One centralized model on every site's training rows together (the upper bound), at the
    largest ε any site's training had spent by the matched round (one model, one ε: the
    largest leaves the upper bound no less budget than any site had)."""
    log.info("training pooled centralized baseline")
    x = np.concatenate([s.x_train for s in sites])
    y = np.concatenate([s.y_train for s in sites])
    return train_baseline(settings, spec, x, y, rounds=matched.rounds, budget=matched.pooled())
