"""Pure DP-SGD accounting over a whole training, never a single round.

A ClientApp is rebuilt every round, so a fresh Opacus ``PrivacyEngine`` would forget earlier
rounds. Instead each site keeps its accountant *history* — a list of
``(noise_multiplier, sample_rate, steps)`` — and ε is always composed over all of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from opacus.accountants import RDPAccountant, create_accountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier
from scipy.optimize import brentq

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
    return calibrate_noise(
        target_epsilon=settings.privacy.target_epsilon,
        delta=delta,
        rate=sample_rate(n_train=n_train, batch_size=settings.train.batch_size),
        steps=run_steps(settings, n_train),
        accountant=accountant,
    )


def run_steps(settings, n_train: int) -> int:
    """Every DP-SGD step a site plans for a run: all rounds and any fine-tuning steps."""
    t = settings.train
    return planned_steps(
        n_train=n_train,
        batch_size=t.batch_size,
        local_epochs=t.local_epochs,
        rounds=settings.rounds,
        local_steps=t.local_steps,
    ) + fine_tuning_steps(settings)


# Above this σ a DP-SGD step is mostly noise (Opacus's own search for σ starts there): a run
# that would need more has no useful budget left, and the site refuses it.
MAX_NOISE_MULTIPLIER = 10.0
# The releases' noise multiplier is searched up to here: a release is one step (q = 1), so
# more noise is still a useful, if coarse, statistic.
MAX_RELEASE_NOISE = 1000.0


def noise_for_rest(
    history: History, *, rate: float, steps: int, target_epsilon: float, delta: float, accountant: str
) -> float | None:
    """Smallest σ (within 0.01 %) so that ``history`` plus ``steps`` more steps at ``rate``
    compose to at most ``target_epsilon``; None if even ``MAX_NOISE_MULTIPLIER`` is not enough.

    Opacus's ``get_noise_multiplier`` starts from an empty history, so the search is ours.
    """

    def epsilon(sigma: float) -> float:
        return epsilon_spent(list(history) + [(sigma, rate, steps)], delta=delta, accountant=accountant)

    return _smallest_noise(epsilon, target_epsilon, high=MAX_NOISE_MULTIPLIER)


NOISE_TOLERANCE = 1e-4  # relative: the σ found is at most this much above the smallest that fits


def _smallest_noise(epsilon, target: float, *, high: float) -> float | None:
    """The smallest noise multiplier in [0.01, ``high``] whose ``epsilon`` stays within
    ``target`` (to a relative :data:`NOISE_TOLERANCE`), or None if even ``high`` does not.

    ε falls as σ grows; Brent's method (scipy's ``brentq``) on log ε − log target over log σ
    finds the crossing in about 8 evaluations where bisection took about 24, and near the
    crossing each evaluation is Opacus's slow fractional-order RDP (0.1 to 0.5 s): every
    site's calibration, and a 1,000-site simulation's, was mostly this search. What is
    returned is checked, never assumed: the smallest σ of the final bracket whose ε was
    computed within the target (so no run can spend more than it planned).
    """
    low = 0.01
    if epsilon(high) > target:
        return None
    if epsilon(low) <= target:
        return low
    feasible = [high]

    def gap(log_sigma: float) -> float:
        sigma = math.exp(log_sigma)
        spent = epsilon(sigma)
        if spent <= target:
            feasible.append(sigma)
        return math.log(max(spent, 1e-300)) - math.log(target)

    root = brentq(gap, math.log(low), math.log(high), xtol=NOISE_TOLERANCE / 4, rtol=1e-12)
    above = math.exp(root) * (1 + NOISE_TOLERANCE / 2)
    if epsilon(above) <= target:
        feasible.append(above)
    return min(feasible)


@lru_cache(maxsize=4096)
def release_noise(*, epsilon: float, delta: float, releases: int, accountant: str = "rdp") -> float:
    """Noise multiplier z (noise std / L2 sensitivity) so that ``releases`` Gaussian releases
    compose to at most ``epsilon`` at ``delta``: each is one step at sample rate 1."""
    if releases <= 0:
        return 0.0
    found = _smallest_noise(
        lambda z: epsilon_spent([(z, 1.0, releases)], delta=delta, accountant=accountant),
        epsilon,
        high=MAX_RELEASE_NOISE,
    )
    if found is None:
        raise ValueError(f"ε={epsilon:g} is too small for {releases} releases at δ={delta:g}")
    return found


VALIDATION = "validation"  # the release kinds of a training run's plan (ledger rows say which)
TEST = "test"
SUBGROUPS = "subgroups"


def planned_releases(settings) -> dict[str, int]:
    """Gaussian releases a training run plans at each site, by kind: the validation split's
    histograms each round (choosing the round, stopping early) and, once, the test split's of
    the model handed out, plus the personalized and global models' on the test split; and,
    where the run's spec marks subgroup features, once, their levels' histograms on the test
    split (client.subgroup_release). A spec without subgroups plans what it always did."""
    planned = {VALIDATION: settings.rounds, TEST: 1 + (settings.personalize != "none")}
    return planned | ({SUBGROUPS: 1} if settings.data.subgroup_features else {})


@dataclass(frozen=True)
class RunNoise:
    """A site's noise for one run: DP-SGD's σ, each release kind's noise multiplier z and
    how many releases of it the plan holds."""

    sigma: float
    release_z: dict[str, float]
    releases: dict[str, int]

    @property
    def release_history(self) -> History:
        return [(self.release_z[k], 1.0, n) for k, n in self.releases.items() if n]


def release_noises(
    *, epsilon: float, delta: float, releases: dict[str, int], accountant: str
) -> dict[str, float]:
    """Each kind's z, the kinds sharing ``epsilon`` equally in zCDP terms (Σ n/z² split evenly,
    so z_kind ∝ √n_kind): the one test release is as precise as all rounds' validation
    releases together, not one of ``rounds`` + 1 equal ones."""
    kinds = {k: n for k, n in releases.items() if n > 0}
    if not kinds:
        return {k: 0.0 for k in releases}
    scale = release_noise(epsilon=epsilon, delta=delta, releases=len(kinds), accountant=accountant)
    # len(kinds) releases at ``scale`` compose exactly as kind k's n_k releases at scale·√n_k.
    return {k: scale * math.sqrt(n) if n else 0.0 for k, n in releases.items()}


@lru_cache(maxsize=4096)
def _run_noise(
    *, target: float, share: float, delta: float, accountant: str, rate: float, steps: int, releases: tuple
) -> RunNoise:
    planned = dict(releases)
    z = release_noises(epsilon=target * share, delta=delta, releases=planned, accountant=accountant)
    history = [(z[k], 1.0, n) for k, n in planned.items() if n]
    # The plan's σ, however large (as Opacus's own calibration): MAX_NOISE_MULTIPLIER bounds
    # only a recalibration of a run already under way, not what a small site's plan needs.
    sigma = _smallest_noise(
        lambda s: epsilon_spent(history + [(s, rate, steps)], delta=delta, accountant=accountant),
        target,
        high=MAX_RELEASE_NOISE,
    )
    if sigma is None:
        raise ValueError(
            f"ε={target:g} leaves DP-SGD no useful noise after the releases at release share {share:g}"
        )
    return RunNoise(sigma=sigma, release_z=z, releases=planned)


def site_noise_for_run(
    settings, n_train: int, *, delta: float, accountant: str, release_share: float
) -> RunNoise:
    """DP-SGD's σ and the releases' z of a run at one site: the releases (validation each round,
    the test split once, personalize, subgroups) spend ``release_share`` of the run's ε target on their
    own; σ is the smallest noise with which every training and fine-tuning step after them
    stays within the whole target. One ε per patient: the run's target bounds both together."""
    releases = planned_releases(settings) if release_share > 0 else {}
    return _run_noise(
        target=settings.privacy.target_epsilon,
        share=release_share,
        delta=delta,
        accountant=accountant,
        rate=sample_rate(n_train=n_train, batch_size=settings.train.batch_size),
        steps=run_steps(settings, n_train),
        releases=tuple(sorted(releases.items())),
    )
