"""A DP run with personalize=finetune (issue N, acceptance 3): every site's fine-tuning steps are
in its ledger, and ε recomputed with Opacus's accountant from those entries stays within the
run's target and the site's cap; personalization.json and the report's table show both models;
summary.json, the report and ``lhsfed registry show`` show the ledger's ε, fine-tuning included
(issue P, acceptance 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from client.budget import FINE_TUNING_ROUND
from client.ledger import open_site_ledger
from client.site_policy import simulated_policy
from federation.core.privacy import calibrate_noise, epsilon_spent
from federation.core.run_layout import PERSONALIZATION
from federation.modeler.report import markdown_table, personalization_table
from federation.modeler.report_format import fmt
from tests.helpers.epsilon_views import registry_show, report_sites, shown_per_site
from tests.helpers.runs import read_json, run_launcher

ROUNDS, STEPS, TARGET = 1, 5, 3.0
SITES = ("cleveland", "hungary", "switzerland", "va")


TASK = "uci_heart-num"


def _registry_uri(run: Path) -> str:
    return f"sqlite:///{run.parent / 'registry.db'}"


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finetune_run")
    proc = run_launcher(
        tmp,
        "federation.runtime=inprocess",
        f"rounds={ROUNDS}",
        "personalize=finetune",
        f"personalize_steps={STEPS}",
        f"privacy.target_epsilon={TARGET}",
        "early_stopping.patience=0",
        "registry.enabled=true",
        f"registry.uri={_registry_uri(tmp / 'run')}",
        "registry.min_pooled_auroc=0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def _opacus_epsilon(history, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = list(history)
    return accountant.get_epsilon(delta=delta)


@pytest.mark.slow
def test_fine_tuning_steps_are_charged_and_epsilon_stays_within_target_and_cap(finetune_run):
    for site in SITES:
        policy = simulated_policy(site, run_folder=finetune_run)
        entries = open_site_ledger(policy, site).entries(str(finetune_run))
        tuning = [e for e in entries if e.server_round == FINE_TUNING_ROUND and not e.is_release]
        assert [e.steps for e in tuning] == [STEPS], entries  # reserved once, the planned steps
        # then the personalized metrics: one release, the run's last row
        assert entries[-1].is_release and entries[-1].release.startswith("test split after the run")
        history = [e.accountant_step for e in entries]
        epsilon = _opacus_epsilon(history, entries[0].delta)
        assert epsilon <= TARGET * (1 + 1e-6)
        assert epsilon <= policy.max_epsilon
        assert epsilon == pytest.approx(entries[-1].epsilon_run, rel=1e-9)
        assert tuning[0].noise_multiplier == entries[0].noise_multiplier  # on plan: the run's σ
        summary = read_json(finetune_run / "summary.json")["privacy"]["sites"][site]
        assert summary["epsilon"] == pytest.approx(epsilon, rel=1e-6)  # ε shown is ε spent


@pytest.mark.slow
def test_without_the_fine_tuning_steps_in_the_plan_the_same_steps_would_pass_the_target(finetune_run):
    """Control: σ calibrated for the rounds' steps only (a plan that leaves fine-tuning out)
    takes the site past the target once the fine-tuning steps are taken; the run's plan
    (federation.core.privacy.fine_tuning_steps in noise_for_run) is what keeps it within."""
    policy = simulated_policy("cleveland", run_folder=finetune_run)
    entries = open_site_ledger(policy, "cleveland").entries(str(finetune_run))
    delta, training = entries[0].delta, [e for e in entries if not e.is_release]
    rate = training[0].sample_rate
    round_steps = sum(e.steps for e in training if e.server_round != FINE_TUNING_ROUND)
    weak_sigma = calibrate_noise(target_epsilon=TARGET, delta=delta, rate=rate, steps=round_steps)

    weak = [(weak_sigma, rate, e.steps) for e in training]

    assert epsilon_spent(weak, delta=delta) > TARGET
    assert epsilon_spent([e.accountant_step for e in entries], delta=delta) <= TARGET * (1 + 1e-6)


@pytest.mark.slow
def test_personalization_json_and_report_table_compare_both_models_per_site(finetune_run):
    result = read_json(finetune_run / PERSONALIZATION)

    assert result["mode"] == "finetune"
    assert set(result["sites"]) | set(result["refused"]) == set(SITES)
    for entry in result["sites"].values():
        for model in ("global", "personalized"):
            low, high = entry[model]["auroc_ci"]
            # a DP release: an AUROC with its interval, or none when the noisy class totals
            # leave it undefined (a small site's release can)
            assert (
                (low <= entry[model]["auroc"] <= high) if entry[model]["auroc"] is not None else low is None
            )
        assert entry["steps"] == STEPS and entry["epsilon"] <= TARGET * (1 + 1e-6)
        assert isinstance(entry["worse"], bool)
    table = markdown_table(personalization_table(result))
    assert all(site in table for site in result["sites"])


@pytest.mark.slow
def test_a_site_exports_its_personalized_model_and_a_platt_fit_is_folded_in_exactly(finetune_run, tmp_path):
    """``lhsfed export --personalized``: the site's kept fine-tuned model, and a Platt
    recalibration folded into the last layer, score exactly as the site's own model does."""
    import dataclasses

    import numpy as np

    from client.personalize import load_personalized, personalized_path, save_personalized
    from federation.cli.main import main as lhsfed
    from federation.core.data import load_site, site_file
    from federation.core.model import predict_risk
    from federation.modeler.personalized_export import personalized_checkpoint
    from federation.modeler.run_loader import load_saved_model, load_settings, saved_model_path

    settings = load_settings(finetune_run)
    kept = personalized_path(simulated_policy("cleveland", run_folder=finetune_run), str(finetune_run))
    rows = load_site(site_file(settings.data, "cleveland"), settings.data, "cleveland").x_test
    checkpoint = load_saved_model(saved_model_path(finetune_run, None))
    own = load_personalized(kept, settings)
    recalibrated = dataclasses.replace(own, mode="recalibrate", platt=(0.4, 1.7))
    save_personalized(tmp_path / "platt.pt", recalibrated, str(finetune_run))

    for path, site_model in ((kept, own), (tmp_path / "platt.pt", recalibrated)):
        exported, note = personalized_checkpoint(checkpoint, settings, path)
        assert np.allclose(predict_risk(exported.model, rows), site_model.risk(rows), atol=1e-6), note["mode"]
    assert not np.allclose(predict_risk(checkpoint.model, rows), own.risk(rows), atol=1e-4)  # not the global

    out = tmp_path / "export"
    assert lhsfed(["export", str(finetune_run), "--personalized", str(kept), "--out", str(out)]) == 0
    card = read_json(out / "model_card.json")
    assert card["personalized"]["mode"] == "finetune" and card["personalized"]["file"] == kept.name


@pytest.mark.slow
def test_report_and_registry_show_the_ledgers_epsilon_with_fine_tuning(finetune_run, capsys):
    """ε shown is ε spent: the report's sites table and ``registry show`` give each site's run
    ε and lifetime ε as its ledger holds them, the fine-tuning steps and the personalized
    release included (recomputed here with Opacus from every row)."""
    rows = report_sites(finetune_run, capsys)
    version = next(
        line for line in registry_show(_registry_uri(finetune_run), TASK, capsys) if "version 1" in line
    )
    registry_run, registry_total = shown_per_site(version, "ε"), shown_per_site(version, "site total ε")
    for site in SITES:
        entries = open_site_ledger(simulated_policy(site, run_folder=finetune_run), site).entries()
        assert any(e.server_round == FINE_TUNING_ROUND for e in entries)
        lifetime = _opacus_epsilon([e.accountant_step for e in entries], entries[0].delta)
        assert rows[site]["site total ε"] == fmt(lifetime)
        assert rows[site]["ε spent (this run)"] == fmt(lifetime)  # the task's first run
        assert registry_total[site] == pytest.approx(lifetime, rel=1e-5)
        assert registry_run[site] == pytest.approx(lifetime, rel=1e-5)
