"""A site's δ when it sets none: derived from its own training rows, so a large hospital is not
refused every round by a δ that fits only small ones; a δ it sets itself is still checked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from client.budget import SiteBudget
from client.ledger import open_site_ledger
from client.site_policy import MAX_DERIVED_DELTA, deployed_policy, derived_delta, simulated_policy
from federation.core.errors import PrivacyBudgetError
from federation.core.settings import RunSettings
from tests.helpers.site_nodes import run_config

BIG = 100_000  # training rows: 1/(10·n_train) = 1e-6, below the simulation's old default 1e-5


def _node(tmp_path, **policy) -> dict:
    return {
        "ledger-path": str(tmp_path / "ledger.sqlite"),
        "node-key": str(tmp_path / "big.key"),
        "spec-path": str(tmp_path / "spec.yaml"),
        "max-epsilon": 10.0,
        **policy,
    }


def _budget(tmp_path, n_train: int = BIG, **policy) -> SiteBudget:
    site_policy = deployed_policy(_node(tmp_path, **policy))
    ledger = open_site_ledger(site_policy, "big", create_key=True)
    return SiteBudget(site="big", run="run-1", ledger=ledger, policy=site_policy, n_train=n_train)


@pytest.mark.parametrize(
    ("n_train", "delta"),
    [(300, 1e-5), (10_000, 1e-5), (30_000, 3.3e-6), (BIG, 1e-6), (123_456, 8.1e-7), (7, 1e-5)],
)
def test_the_derived_delta_is_the_smaller_of_1e_5_and_a_tenth_of_1_over_n(n_train, delta):
    assert derived_delta(n_train) == delta


@hsettings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**9))
def test_the_derived_delta_is_within_the_sites_bound_and_within_10_percent_of_it(n_train):
    delta = derived_delta(n_train)
    bound = min(MAX_DERIVED_DELTA, 1 / (10 * n_train))
    assert 0.9 * bound <= delta <= bound


def test_a_site_without_delta_accounts_at_its_derived_delta(tmp_path, monkeypatch):
    monkeypatch.delenv("LHSFED_DELTA", raising=False)
    for policy in (
        deployed_policy(_node(tmp_path)),
        deployed_policy(_node(tmp_path, delta="auto")),
        simulated_policy("va", run_folder=tmp_path),
    ):
        assert policy.delta is None and policy.delta_for(BIG) == 1e-6
    assert simulated_policy("va", run_folder=tmp_path).to_json()["delta"] == "auto"


def test_a_100k_row_site_without_delta_trains_a_round_at_a_delta_under_its_bound(tmp_path):
    settings = RunSettings.from_run_config(run_config(tmp_path, "rounds=2"))
    budget = _budget(tmp_path)

    noise = budget.noise(settings, 1)
    entries = budget.reserve(settings, noise, 1)

    assert budget.delta == 1e-6 <= 1 / (10 * BIG)
    assert budget.run_refusal(settings, noise) is None
    assert [(e.server_round, e.delta) for e in entries] == [(1, 1e-6)]
    assert 0 < entries[-1].epsilon_run <= settings.privacy.target_epsilon * (1 + 1e-6)


def test_an_explicit_delta_above_the_bound_is_still_refused(tmp_path):
    settings = RunSettings.from_run_config(run_config(tmp_path, "rounds=2"))
    budget = _budget(tmp_path, delta=1e-5)
    noise = budget.noise(settings, 1)

    with pytest.raises(PrivacyBudgetError) as refused:
        budget.reserve(settings, noise, 1)

    assert "site big's δ=1e-05 is more than 1/(10·n_train) = 1e-06" in str(refused.value)
    assert budget.ledger.entries() == []
