"""Every row-dependent number a site sends is a release charged to its ledger before it leaves.

One ε per patient per site (issue P): a Gaussian mechanism on sums of per-patient contributions
whose L2 norm is bounded by ``sensitivity`` (a patient adds 1 to one bin of one histogram, the
rows of the validation and test splits being disjoint), plus N(0, (z·sensitivity)²) noise from
the site's CSPRNG (:mod:`client.site_randomness`, never the run config's seed). Its ledger row
(noise multiplier z, rate 1, one step, and what was released) is written by
:meth:`client.budget.SiteBudget.reserve_release` in the same transaction discipline as a
training round (cap, and the run's ε target for a release of a training run's plan), so the
site's accountant composes releases and DP-SGD into one ε.

A run the site allows without DP (``require-dp=false``, ``privacy=off``) releases exact
numbers; its row then has z = 0, i.e. no finite ε, as its training has.

The wire guard (:func:`release_guard_mod`, one place for every reply): a key of a reply's
metrics leaves only if a charged release of this message covers it (:meth:`Charged.covers`),
or it is one of :data:`PUBLIC_KEYS` (what is not a function of the site's patients beyond its
row count, which it already sends to be weighted). Anything else is refused at the site.

Why hand-written: the mechanism is a sum and a draw; the noise must come from the site's own
keyed stream, which no library offers for this torch (see client.site_randomness); Opacus's
accountants do the composition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
from flwr.app import Context, Error, Message

from client.site_randomness import SiteRandomness
from federation.core import wire

log = logging.getLogger(__name__)

# Not a function of any patient's values: the split sizes (functions of the row count the
# training reply sends for FedAvg's weights), the accounting scalars, the run's threshold.
PUBLIC_KEYS = frozenset(
    {
        wire.NUM_EXAMPLES,
        wire.N_TEST,
        wire.VALIDATION_PREFIX + wire.N_TEST,
        wire.EPSILON,
        wire.SITE_EPSILON,
        wire.CHARGED_ROUNDS,
        wire.DELTA,
        wire.STEPS,
        wire.NOISE_MULTIPLIER,
        wire.SAMPLE_RATE,
        wire.THRESHOLD,
        wire.VALIDATION_PREFIX + wire.THRESHOLD,
        wire.RELEASE_NOISE_STD,
        wire.RELEASE_EPSILON,
    }
)
ARRAYS_KEY = "record:" + wire.ARRAYS  # the model's weights: covered by a training reservation

_charged: ContextVar[set[str] | None] = ContextVar("lhsfed_charged_keys", default=None)


@dataclass
class Charged:
    """A release whose ledger row is written: its (noisy) values, and the keys it may cover."""

    values: np.ndarray | None
    noise_std: float
    epsilon_run: float | None = None  # the ledger's ε of the run and of the site right after it
    epsilon_total: float | None = None

    def covers(self, keys: Iterable[str]) -> None:
        """Declare reply keys computed from this release only (post-processing)."""
        charged = _charged.get()
        if charged is not None:
            charged.update(keys)


def gaussian_release(
    budget,
    settings,
    values: np.ndarray,
    *,
    sensitivity: float,
    z: float,
    server_round: int,
    what: str,
    in_run_plan: bool,
    limit: int | None = None,
) -> Charged:
    """Charge the release to the site's ledger, then add the site's noise (z = 0: exact, a DP-off
    run the site allows). Raises PrivacyBudgetError (nothing released) if the ledger refuses."""
    std = float(z) * float(sensitivity)
    entry = budget.reserve_release(
        settings,
        z=float(z),
        server_round=server_round,
        release=f"{what}; L2 sensitivity {sensitivity:g}; noise std {std:.6g}",
        in_run_plan=in_run_plan,
        limit=limit,
    )
    values = np.asarray(values, dtype=float)
    if std > 0:
        values = values + SiteRandomness().standard_normal(values.size).reshape(values.shape) * std
    return Charged(values.copy(), std, entry.epsilon_run, entry.epsilon_total)


def charged_training() -> Charged:
    """The training reservation (client.budget.reserve) covers the weights and, DP off, the loss."""
    charged = Charged(None, 0.0)
    charged.covers([ARRAYS_KEY, wire.TRAIN_LOSS])
    return charged


def uncharged_keys(reply: Message, charged: set[str]) -> list[str]:
    """The reply's keys that no charged release of this message covers and are not public."""
    content = reply.content
    keys = list(content[wire.METRICS].keys()) if wire.METRICS in content.metric_records else []
    if wire.ARRAYS in content.array_records:
        keys.append(ARRAYS_KEY)
    return sorted(k for k in keys if k not in PUBLIC_KEYS and k not in charged)


def release_guard_mod(message: Message, context: Context, call_next) -> Message:
    """Refuse any reply carrying a key no charged release covers (the one wire-level check)."""
    token = _charged.set(set())
    try:
        reply = call_next(message, context)
        charged = set(_charged.get() or ())
    finally:
        _charged.reset(token)
    if reply.has_error():
        return reply
    missing = uncharged_keys(reply, charged)
    if not missing:
        return reply
    log.error("refused to send uncharged release keys %s (a site bug: nothing was sent)", missing)
    return Message(
        Error(code=wire.UNCHARGED_RELEASE, reason="site error: a reply held a statistic no release charged"),
        reply_to=message,
    )
