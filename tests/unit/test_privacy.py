"""ε accounting over the whole training: calibration, composition, history merging."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import RDPAccountant

from federation.core.privacy import (
    calibrate_noise,
    epsilon_spent,
    merge_history,
    planned_steps,
    sample_rate,
)


@settings(max_examples=6, deadline=None)
@given(
    eps=st.floats(0.5, 10.0),
    n=st.integers(30, 500),
    rounds=st.integers(1, 20),
    epochs=st.integers(1, 3),
)
def test_calibrated_noise_spends_at_most_the_target(eps, n, rounds, epochs):
    rate = sample_rate(n_train=n, batch_size=16)
    steps = planned_steps(n_train=n, batch_size=16, local_epochs=epochs, rounds=rounds)

    sigma = calibrate_noise(target_epsilon=eps, delta=1e-5, rate=rate, steps=steps)
    spent = epsilon_spent([(sigma, rate, steps)], delta=1e-5)

    assert spent <= eps
    assert spent > 0.9 * eps  # calibration is tight, not wildly conservative


@settings(max_examples=8, deadline=None)
@given(parts=st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_history_split_across_rounds_composes_like_one_run(parts):
    history = [(1.1, 0.1, p) for p in parts]

    accountant = RDPAccountant()
    accountant.history = [(1.1, 0.1, sum(parts))]

    assert abs(epsilon_spent(history, delta=1e-5) - accountant.get_epsilon(delta=1e-5)) < 1e-9
    assert merge_history(history) == [(1.1, 0.1, sum(parts))]


def test_nothing_spent_is_zero():
    assert epsilon_spent([], delta=1e-5) == 0.0


@settings(max_examples=12, deadline=None)
@given(
    history=st.lists(
        st.tuples(st.floats(0.3, 8.0), st.floats(1e-4, 1.0), st.integers(1, 20000)), min_size=1, max_size=6
    ),
    delta=st.sampled_from([1e-3, 1e-5, 1e-7]),
)
def test_cached_rdp_composition_is_opacus_bit_for_bit(history, delta):
    """The per-step RDP cache must return exactly what a fresh Opacus accountant computes."""
    accountant = RDPAccountant()
    accountant.history = list(history)
    expected = float(accountant.get_epsilon(delta=delta))
    assert epsilon_spent(history, delta=delta) == expected
    assert epsilon_spent(history, delta=delta) == expected  # second call served by the cache
