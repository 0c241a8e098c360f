"""A resumed run re-doing its interrupted round: the site's budget gives the rest of the run
more noise so that its ledger plus the rest of its plan stays within the run's ε target.

A SiteBudget over a deployed node's temporary ledger (no Flower run). ε is recomputed here
with Opacus's RDP accountant directly, not with the code under test; the control bypasses the
recalibration and shows the same composition then passes the target.
"""

from __future__ import annotations

import pytest
from flwr.app import Context, RecordDict
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from client.budget import SiteBudget
from client.site_policy import deployed_policy
from federation.core.privacy import planned_steps, sample_rate
from federation.core.settings import RunSettings
from tests.helpers.site_nodes import deployed_node, run_config

N_TRAIN, ROUNDS, REDONE = 200, 4, 2
ORDERS = RDPAccountant.DEFAULT_ALPHAS


def _budget(tmp_path, *overrides: str) -> tuple[SiteBudget, RunSettings]:
    node = deployed_node(tmp_path / "va", "va")
    config = run_config(tmp_path, f"rounds={ROUNDS}", "train.local_steps=5", *overrides)
    settings = RunSettings.from_run_config(config)
    context = Context(run_id=1, node_id=11, node_config=node, state=RecordDict(), run_config=config)
    budget = SiteBudget.open(context, settings, deployed_policy(node), "va", N_TRAIN)
    assert budget.policy.accountant == "rdp"  # what the recomputation below composes
    return budget, settings


def _interrupted_in_round_2(budget: SiteBudget, settings: RunSettings) -> None:
    """Rounds 1 and 2 reserved at the planned σ; the run stopped in round 2 (spent for good)."""
    for server_round in range(1, REDONE + 1):
        budget.reserve(settings, budget.noise(settings, server_round), server_round)


def _opacus_epsilon(history, delta: float) -> float:
    rdp = sum(compute_rdp(q=q, noise_multiplier=s, steps=n, orders=ORDERS) for s, q, n in history)
    return get_privacy_spent(orders=ORDERS, rdp=rdp, delta=delta)[0]


def _ledger_and_the_rest(budget: SiteBudget, settings: RunSettings, sigma: float) -> float:
    """ε of this run's ledger plus rounds REDONE..ROUNDS (and any fine-tuning) at ``sigma``, and
    the run's planned releases still to come (validation each round, the test split once)."""
    t = settings.train
    rest = planned_steps(
        n_train=N_TRAIN,
        batch_size=t.batch_size,
        local_epochs=t.local_epochs,
        rounds=ROUNDS - REDONE + 1,
        local_steps=t.local_steps,
    )
    rest += settings.personalize_steps if settings.personalize == "finetune" else 0
    rate = sample_rate(n_train=N_TRAIN, batch_size=t.batch_size)
    releases = budget.releases_to_come(settings)
    return _opacus_epsilon(budget.ledger.history(budget.run) + [(sigma, rate, rest)] + releases, budget.delta)


@pytest.mark.parametrize("personalize", ["none", "finetune"])
def test_a_redone_round_gets_the_noise_that_keeps_the_run_within_its_target(tmp_path, personalize):
    budget, settings = _budget(tmp_path, f"personalize={personalize}")
    target, planned = settings.privacy.target_epsilon, budget.noise(settings)
    _interrupted_in_round_2(budget, settings)
    assert [e.noise_multiplier for e in budget.ledger.entries(budget.run)] == [planned] * REDONE

    sigma = budget.noise(settings, REDONE)  # the resumed run sends round 2 again

    assert sigma > planned
    assert _ledger_and_the_rest(budget, settings, sigma) <= target * (1 + 1e-6)
    # and the run completes at the σ each round is given, within the target
    for server_round in range(REDONE, ROUNDS + 1):
        budget.reserve(settings, budget.noise(settings, server_round), server_round)
    assert _opacus_epsilon(budget.ledger.history(budget.run), budget.delta) <= target * (1 + 1e-6)


def test_without_the_recalibration_the_redone_round_would_pass_the_target_control(tmp_path, monkeypatch):
    """Control: the same ledger, the recalibration bypassed (the planned σ for the rest):
    the run's ledger plus the rest of its plan composes past the target."""
    budget, settings = _budget(tmp_path)
    planned = budget.noise(settings)
    _interrupted_in_round_2(budget, settings)
    monkeypatch.setattr(SiteBudget, "_recalibrated", lambda self, settings, *args, **kwargs: planned)

    sigma = budget.noise(settings, REDONE)

    assert sigma == planned
    assert _ledger_and_the_rest(budget, settings, sigma) > settings.privacy.target_epsilon * 1.01
