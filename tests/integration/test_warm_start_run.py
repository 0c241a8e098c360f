"""Campaign 2 warm-started from campaign 1 (issue M, acceptance 4 and the warm start itself;
issue P, acceptance 6: the ε shown is the ε the sites' ledgers hold, every campaign included).

Campaign 1 is the session's ``dp_run`` (DP on, 5 rounds, Ray). Campaign 2 runs in-process,
DP on, 2 rounds, ``init=`` that run folder, ``campaign=`` into a registry, with nothing said
about ledgers: the simulated sites spend from the task's ledger folder under the working
directory (``outputs/ledgers/uci_heart-num``), as campaign 1's did. Campaign 2 runs in a
copy of campaign 1's working directory's ledger folder (ledgers, node keys and node state
together, so ``dp_run`` itself stays as other tests expect it). Its learning rate is tiny, so
its round-1 global model is its round 0: the parent's model, which shows where it started.
A third, throwaway run (``federation.fresh_ledgers=true``) starts from empty ledgers and says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.core.model import build_model
from federation.core.records import read_rounds
from federation.core.run_layout import MODEL, SUMMARY, round_model
from federation.core.safe_load import load_weights_only
from federation.core.settings import model_spec
from federation.modeler.report_format import fmt
from federation.modeler.run_loader import load_settings
from tests.helpers.epsilon_views import registry_show, report_sites, shown_per_site
from tests.helpers.privacy_runs import rdp_epsilon, round_steps
from tests.helpers.runs import read_json, run_launcher

pytestmark = pytest.mark.slow
SITES = ("cleveland", "hungary", "switzerland", "va")
TASK = "uci_heart-num"
SHARED = Path("outputs") / "ledgers" / TASK  # the task's simulated ledgers, per working directory


@pytest.fixture(scope="module")
def campaigns(dp_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm_start")
    ledgers = shutil.copytree(dp_run.parent / SHARED, tmp / SHARED)
    uri = f"sqlite:///{tmp / 'registry.db'}"
    proc = run_launcher(
        tmp,
        f"init={dp_run}",
        "rounds=2",
        "federation.runtime=inprocess",
        "train.lr=1e-9",
        "campaign=warm",
        f"registry.uri={uri}",
        "registry.min_pooled_auroc=0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return SimpleNamespace(first=dp_run, second=tmp / "run", ledgers=ledgers, stdout=proc.stdout, uri=uri)


def _ledger(folder: Path, site: str) -> SiteLedger:
    identity = NodeIdentity.of_key(folder / f"{site}.key")
    return SiteLedger(folder / f"{site}.sqlite", site=site, identity=identity)


def _lifetime(folder: Path, site: str) -> float:
    """The site's ε over every row of its ledger (training and releases of every campaign),
    recomputed with Opacus's RDP analysis."""
    return rdp_epsilon(_grouped(_ledger(folder, site).history()))


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
        ledger = _ledger(campaigns.ledgers, site)

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


def test_campaign_2_spent_from_the_tasks_shared_ledgers_without_being_told(campaigns):
    policies = read_json(campaigns.second / "site_policy.json")
    assert {p["ledger_path"] for p in policies.values()} == {
        str(campaigns.ledgers / f"{site}.sqlite") for site in SITES
    }
    assert not (campaigns.second / "ledgers").exists()
    assert "fresh ledgers" not in campaigns.stdout


def test_report_and_registry_show_each_sites_lifetime_epsilon_of_its_ledger(campaigns, capsys):
    """summary.json, the report and ``lhsfed registry show`` all show, per site, the ε its
    ledger holds over both campaigns (recomputed from the rows), not campaign 2's alone."""
    summary = read_json(campaigns.second / SUMMARY)["privacy"]["sites"]
    rows = report_sites(campaigns.second, capsys)
    shown = registry_show(campaigns.uri, TASK, capsys)
    version = next(line for line in shown if line.strip().startswith("version 1"))
    registry_totals = shown_per_site(version, "site total ε")
    registry_run = shown_per_site(version, "ε")
    for site in SITES:
        lifetime = _lifetime(campaigns.ledgers, site)
        assert summary[site]["site_epsilon"] == pytest.approx(lifetime, rel=1e-9)
        assert rows[site]["site total ε"] == fmt(lifetime)
        assert rows[site]["ε spent (this run)"] == fmt(summary[site]["epsilon"])
        assert registry_totals[site] == pytest.approx(lifetime, rel=1e-5)
        assert registry_run[site] == pytest.approx(summary[site]["epsilon"], rel=1e-5)
        assert registry_run[site] < registry_totals[site]


def test_a_fresh_ledgers_run_says_so_and_counts_no_earlier_campaign(campaigns):
    tmp = campaigns.second.parent
    proc = run_launcher(
        tmp,
        "rounds=1",
        "federation.runtime=inprocess",
        "federation.fresh_ledgers=true",
        run_dir=tmp / "fresh",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = tmp / "fresh"
    said = "fresh ledgers: ε of earlier campaigns is not counted (the sites' ledgers start empty in"
    assert f"{said} {fresh / 'ledgers'})" in proc.stdout
    summary = read_json(fresh / SUMMARY)["privacy"]["sites"]
    for site in SITES:
        lifetime = _lifetime(fresh / "ledgers", site)
        assert {e.run for e in _ledger(fresh / "ledgers", site).entries()} == {str(fresh)}
        assert summary[site]["site_epsilon"] == pytest.approx(lifetime, rel=1e-9)
        assert summary[site]["site_epsilon"] == pytest.approx(summary[site]["epsilon"], rel=1e-9)
        assert lifetime < _lifetime(campaigns.ledgers, site)
