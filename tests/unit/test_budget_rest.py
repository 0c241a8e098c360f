"""``noise_for_rest``: the σ that keeps a run's rounds still to come within what its ledger
left of the target (a resumed run whose interrupted round stays spent)."""

from __future__ import annotations

import pytest

from client.budget import MAX_NOISE_MULTIPLIER, noise_for_rest
from federation.core.privacy import calibrate_noise, epsilon_spent

RATE, STEPS, DELTA = 1 / 13, 13, 1e-5


def _rest(history, steps, target):
    return noise_for_rest(
        history, rate=RATE, steps=steps, target_epsilon=target, delta=DELTA, accountant="rdp"
    )


@pytest.mark.parametrize(
    "done, extra, left, target",
    [(1, 1, 2, 3.0), (2, 0, 1, 3.0), (1, 0, 3, 1.0), (3, 1, 2, 8.0), (1, 1, 9, 3.0)],
)
def test_the_rest_stays_within_the_target_and_no_less_noise_would(done, extra, left, target):
    sigma0 = calibrate_noise(target_epsilon=target, delta=DELTA, rate=RATE, steps=STEPS * (done + left))
    history = [(sigma0, RATE, STEPS * (done + extra))]  # ``extra`` rounds interrupted and redone

    sigma = _rest(history, STEPS * left, target)

    assert sigma is not None
    assert epsilon_spent(history + [(sigma, RATE, STEPS * left)], delta=DELTA) <= target
    assert epsilon_spent(history + [(sigma * 0.999, RATE, STEPS * left)], delta=DELTA) > target * 0.999
    if extra:  # steps past the plan: more noise than the plan's σ for what is left
        assert sigma > sigma0


def test_nothing_useful_left_is_none():
    sigma0 = calibrate_noise(target_epsilon=3.0, delta=DELTA, rate=RATE, steps=STEPS * 3)
    spent = [(sigma0, RATE, STEPS * 3)]
    almost_all = epsilon_spent(spent, delta=DELTA) + 1e-4
    assert _rest(spent, STEPS, almost_all) is None  # would need σ > MAX_NOISE_MULTIPLIER
    assert _rest([(sigma0, RATE, STEPS * 4)], STEPS, 3.0) is None  # already past the target
    assert _rest([], STEPS, 3.0) < MAX_NOISE_MULTIPLIER
