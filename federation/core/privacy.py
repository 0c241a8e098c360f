"""Pure DP-SGD accounting over a whole training, never a single round.

A ClientApp is rebuilt every round, so a fresh Opacus ``PrivacyEngine`` would forget earlier
rounds. Instead each site keeps its accountant *history* — a list of
``(noise_multiplier, sample_rate, steps)`` — and ε is always composed over all of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from opacus.accountants import RDPAccountant, create_accountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier

History = list[tuple[float, float, int]]
RDP_ORDERS = tuple(RDPAccountant.DEFAULT_ALPHAS)


def steps_per_epoch(*, n_train: int, batch_size: int) -> int:
    """Batches an Opacus DP data loader yields per epoch (it uses 1 / sample_rate)."""
    return math.ceil(n_train / batch_size)


def sample_rate(*, n_train: int, batch_size: int) -> float:
    """Poisson sampling rate Opacus derives from the plain loader's length."""
    return 1.0 / steps_per_epoch(n_train=n_train, batch_size=batch_size)


def planned_steps(
    *, n_train: int, batch_size: int, local_epochs: int, rounds: int, local_steps: int = 0
) -> int:
    """DP-SGD steps a site takes over the whole training (``local_steps`` > 0: per round)."""
    if local_steps > 0:
        return rounds * local_steps
    return rounds * local_epochs * steps_per_epoch(n_train=n_train, batch_size=batch_size)


@lru_cache(maxsize=4096)  # one entry per site size: a worker playing 100 sites must not cycle
def calibrate_noise(
    *, target_epsilon: float, delta: float, rate: float, steps: int, accountant: str = "rdp"
) -> float:
    """Noise multiplier so that ``steps`` steps at ``rate`` spend at most ``target_epsilon``.

    A binary search over the accountant (about a second): cached, as every round asks again.
    """
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=rate,
            steps=steps,
            accountant=accountant,
        )
    )


def epsilon_spent(
    history: Iterable[tuple[float, float, int]], *, delta: float, accountant: str = "rdp"
) -> float:
    """ε of the composition of every recorded step (0 when nothing was spent).

    A step without noise (σ = 0, training with DP off) has no finite ε: the result is inf.
    """
    entries = [(float(s), float(q), int(n)) for s, q, n in history if int(n) > 0]
    if not entries:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in entries):
        return math.inf
    if accountant == "rdp":
        return _rdp_epsilon(entries, delta)
    acc = create_accountant(accountant)
    acc.history = entries
    return float(acc.get_epsilon(delta=delta))


@lru_cache(maxsize=4096)
def _rdp_of_one_step(sigma: float, rate: float) -> np.ndarray:
    """Opacus's RDP of one subsampled Gaussian step at every default order (read-only)."""
    rdp = rdp_analysis.compute_rdp(q=rate, noise_multiplier=sigma, steps=1, orders=list(RDP_ORDERS))
    rdp.setflags(write=False)
    return rdp


def _rdp_epsilon(entries: History, delta: float) -> float:
    """What Opacus's ``RDPAccountant.get_epsilon`` returns, bit for bit, without recomputing
    the per-order RDP each call: RDP composes by adding, so n steps cost n × one step (the
    same product Opacus forms). A site asks several times a round; with 100 sites per worker
    that recomputation was a quarter of the simulation's time (benchmarks/RESULTS.md (c))."""
    rdp = sum(_rdp_of_one_step(sigma, rate) * steps for sigma, rate, steps in entries)
    eps, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    return float(eps)


def merge_history(history: History) -> History:
    """Collapse consecutive entries with the same (σ, q) — composition is additive in steps."""
    merged: History = []
    for sigma, rate, steps in history:
        if merged and merged[-1][0] == sigma and merged[-1][1] == rate:
            merged[-1] = (sigma, rate, merged[-1][2] + steps)
        else:
            merged.append((sigma, rate, steps))
    return merged


def fine_tuning_steps(settings) -> int:
    """DP-SGD steps a site takes after the federation (``personalize=finetune``), else 0.

    Part of the run's plan: the run's ε target covers the rounds and these steps together.
    """
    return settings.personalize_steps if settings.personalize == "finetune" else 0


def noise_for_run(settings, n_train: int, *, delta: float, accountant: str) -> float:
    """One noise multiplier for a whole run of ``settings`` (a RunSettings): the ε target
    over every round's steps and any fine-tuning steps, at ``delta`` (a site passes its own
    δ and accountant)."""
    t = settings.train
    steps = planned_steps(
        n_train=n_train,
        batch_size=t.batch_size,
        local_epochs=t.local_epochs,
        rounds=settings.rounds,
        local_steps=t.local_steps,
    ) + fine_tuning_steps(settings)
    return calibrate_noise(
        target_epsilon=settings.privacy.target_epsilon,
        delta=delta,
        rate=sample_rate(n_train=n_train, batch_size=t.batch_size),
        steps=steps,
        accountant=accountant,
    )
