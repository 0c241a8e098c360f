"""The noise search (Brent's method, federation.core.privacy._smallest_noise) returns a σ whose
ε Opacus's own accountant puts within the target, and within the tolerance of the smallest
such σ that a plain bisection finds."""

from __future__ import annotations

import pytest
from opacus.accountants import RDPAccountant

from federation.core.privacy import NOISE_TOLERANCE, _smallest_noise, epsilon_spent


def _bisection(epsilon, target: float, high: float) -> float:
    low = 0.01
    while high - low > 1e-6 * high:
        middle = (low + high) / 2
        low, high = (low, middle) if epsilon(middle) <= target else (middle, high)
    return high


@pytest.mark.parametrize(
    "target, rate, steps",
    [(3.0, 1 / 6, 60), (1.0, 0.05, 400), (0.5, 1.0, 3)],  # a UCI site, a large site, releases
)
def test_brent_finds_the_smallest_feasible_noise(target, rate, steps):
    def epsilon(sigma: float) -> float:
        return epsilon_spent([(sigma, rate, steps)], delta=1e-5)

    found = _smallest_noise(epsilon, target, high=1000.0)
    reference = _bisection(epsilon, target, 1000.0)

    accountant = RDPAccountant()
    accountant.history = [(found, rate, steps)]
    assert accountant.get_epsilon(delta=1e-5) <= target
    assert reference * (1 - 1e-6) <= found <= reference * (1 + NOISE_TOLERANCE)  # bisection: to 1e-6


def test_no_noise_fits_or_the_least_already_does():
    assert _smallest_noise(lambda sigma: 10.0, 3.0, high=10.0) is None
    assert _smallest_noise(lambda sigma: 1.0, 3.0, high=10.0) == 0.01
