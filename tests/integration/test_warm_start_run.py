"""Campaign 2 warm-started from campaign 1 (issue M, acceptance 4 and the warm start itself).

Campaign 1 is the session's ``dp_run`` (DP on, 5 rounds, Ray). Campaign 2 runs in-process,
DP on, 2 rounds, ``init=`` that run folder, on a copy of its sites' ledger folder (ledgers,
node keys and node state together, so ``dp_run`` itself stays as other tests expect it):
as ``LHSFED_LEDGER_DIR`` shared by two campaigns would. Its learning rate is tiny, so
its round-1 global model is its round 0: the parent's model, which shows where it started.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.core.model import build_model
from federation.core.records import read_rounds
from federation.core.run_layout import LEDGERS, MODEL, SUMMARY, round_model
from federation.core.safe_load import load_weights_only
from federation.core.settings import model_spec
from federation.modeler.run_loader import load_settings
from tests.helpers.privacy_runs import rdp_epsilon, round_steps
from tests.helpers.runs import read_json, run_launcher

pytestmark = pytest.mark.slow
SITES = ("cleveland", "hungary", "switzerland", "va")


@pytest.fixture(scope="module")
def campaigns(dp_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm_start")
    ledgers = shutil.copytree(dp_run / LEDGERS, tmp / "ledgers")
    proc = run_launcher(
        tmp,
        f"init={dp_run}",
        "rounds=2",
        "federation.runtime=inprocess",
        "train.lr=1e-9",
        env={"LHSFED_LEDGER_DIR": str(ledgers)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return SimpleNamespace(first=dp_run, second=tmp / "run", ledgers=ledgers, stdout=proc.stdout)


def _weights(path) -> dict[str, torch.Tensor]:
    return load_weights_only(path, fix="")["state_dict"]


def test_campaign_2_starts_from_campaign_1s_model(campaigns):
    parent, first_round = _weights(campaigns.first / MODEL), _weights(campaigns.second / round_model(1))
    parent_round = load_weights_only(campaigns.first / MODEL, fix="")["round"]

    assert f"warm start: {campaigns.first} (its round {parent_round})" in campaigns.stdout
    for name in ("preprocess.mean", "preprocess.std"):  # the parent's standardization, kept
        torch.testing.assert_close(first_round[name], parent[name], rtol=1e-6, atol=0)
    for name in ("head.0.weight", "head.0.bias"):
        torch.testing.assert_close(first_round[name], parent[name], rtol=0, atol=1e-5)
    # The control: the fresh model a run without init= starts from is far from the parent.
    fresh = build_model(model_spec(load_settings(campaigns.second)), seed=42).state_dict()
    assert (fresh["head.0.weight"] - parent["head.0.weight"]).abs().max() > 0.05
    # The same model on the same validation rows: campaign 1's selected loss again, within the
    # two DP releases' noise (4 standard errors of the difference).
    parent_loss = next(r for r in read_rounds(campaigns.first) if r["round"] == parent_round)["validation"][
        "pooled"
    ]
    second_loss = read_rounds(campaigns.second)[0]["validation"]["pooled"]
    tolerance = 4 * (parent_loss["loss_se"] ** 2 + second_loss["loss_se"] ** 2) ** 0.5
    assert second_loss["loss"] == pytest.approx(parent_loss["loss"], abs=tolerance)


def _grouped(history: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Steps of equal (σ, q) summed: the same RDP (it is linear in the steps), fewer curves."""
    steps: dict[tuple[float, float], int] = {}
    for sigma, q, n in history:
        steps[sigma, q] = steps.get((sigma, q), 0) + n
    return [(sigma, q, n) for (sigma, q), n in steps.items()]


def test_site_ledgers_compose_both_campaigns(campaigns):
    """Each site's ledger holds both campaigns' steps; its lifetime ε is Opacus's RDP
    composition of all of them; summary.json has this campaign's ε and the lifetime ε."""
    summary = read_json(campaigns.second / SUMMARY)["privacy"]["sites"]
    for site in SITES:
        first, second = (list(round_steps(run, site).values()) for run in (campaigns.first, campaigns.second))
        ledger = SiteLedger(
            campaigns.ledgers / f"{site}.sqlite",
            site=site,
            identity=NodeIdentity.of_key(campaigns.ledgers / f"{site}.key"),
        )

        assert len(second) == 2 and first
        np.testing.assert_allclose(ledger.training_history(), first + second, rtol=1e-12)
        assert {e.run for e in ledger.entries()} == {str(campaigns.first), str(campaigns.second)}
        # ε composes training and every release (each campaign's validation and test releases)
        lifetime = rdp_epsilon(_grouped(ledger.history()))
        assert lifetime > rdp_epsilon(_grouped(first + second))
        assert ledger.last_total() == pytest.approx(lifetime, rel=1e-9)
        assert summary[site]["site_epsilon"] == pytest.approx(lifetime, rel=1e-9)
        this_campaign = [e.accountant_step for e in ledger.entries() if e.run == str(campaigns.second)]
        assert summary[site]["epsilon"] == pytest.approx(rdp_epsilon(_grouped(this_campaign)), rel=1e-6)
        assert summary[site]["epsilon"] < lifetime
