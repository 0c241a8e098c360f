"""Real federations over the four UCI hospitals (Flower simulation runtime, Opacus DP)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from client.ledger import open_site_ledger
from client.site_policy import simulated_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.core.data import load_site, site_file
from federation.core.dataspec import parse_dataset_spec
from federation.core.model import ModelSpec, build_model
from tests.helpers.exact_quality import exact_pooled_auroc
from tests.helpers.runs import read_json, run_launcher

SITES = {"cleveland", "hungary", "switzerland", "va"}
pytestmark = pytest.mark.slow


def _rounds(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_default_dp_run_writes_the_run_folder(dp_run):
    for name in (".hydra/config.yaml", "metrics.jsonl", "model.pt", "summary.json"):
        assert (dp_run / name).is_file(), name
    summary = read_json(dp_run / "summary.json")

    assert set(summary) == {
        "rounds",
        "discarded_rounds",
        "strategy",
        "model",
        "selection",
        "metrics",
        "privacy",
        "sites",
        "sites_trained",
        "sites_never_trained",
    }
    assert (summary["rounds"], summary["strategy"], summary["model"]) == (5, "fedavg", "logreg")
    assert (summary["sites"], summary["sites_trained"], summary["sites_never_trained"]) == (4, 4, [])
    assert summary["discarded_rounds"] == []
    assert set(summary["metrics"]) == {"pooled", "sites"}
    # a DP release: the AUROC's standard error and interval, or (noise over a class total) why not
    assert set(summary["metrics"]["pooled"]) in (
        {"auroc", "auprc", "brier", "auroc_se", "auroc_ci"},
        {"auroc", "auprc", "brier", "auroc_undefined"},
    )
    assert set(summary["metrics"]["sites"]) == SITES
    for site in summary["metrics"]["sites"].values():
        assert set(site) == {"auroc", "auprc", "brier", "n_test"}
    assert set(summary["privacy"]) == {"enabled", "delta", "sites", "charged_not_aggregated", "unconfirmed"}
    assert summary["privacy"]["enabled"] is True
    # every site answered every round and every update was aggregated: no charge went unused
    assert summary["privacy"]["charged_not_aggregated"] == {} == summary["privacy"]["unconfirmed"]
    assert set(summary["privacy"]["sites"]) == SITES
    for site, spent in summary["privacy"]["sites"].items():  # this run's ε, and the site's total
        assert set(spent) == {"epsilon", "site_epsilon", "planned_epsilon", "unspent_epsilon"}
        ledger = open_site_ledger(simulated_policy(site, run_folder=dp_run), site)
        # ε shown is ε spent: training and every release (the test split's, after the rounds)
        assert spent["site_epsilon"] == pytest.approx(ledger.last_total(), rel=1e-12)
        assert spent["site_epsilon"] >= spent["epsilon"] - 1e-9  # a fresh ledger: this run only


def test_dp_run_reaches_pooled_auroc_080(dp_run):
    """The handed-out model, scored here exactly (the summary's figure is a noisy release)."""
    assert exact_pooled_auroc(dp_run) >= 0.80


def test_metrics_jsonl_has_per_site_train_and_validation_every_round_and_test_once(dp_run):
    """Under DP each round releases the validation split; the test split is released once,
    for the round handed out (its record holds it)."""
    rounds, selected = _rounds(dp_run), read_json(dp_run / "summary.json")["selection"]["round"]

    assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
    for record in rounds:
        assert set(record["train"]) == SITES
        assert set(record["validation"]["sites"]) == SITES
        pooled = record["validation"]["pooled"]
        assert {"auroc", "loss", "loss_se"} <= set(pooled)
        # ~130 validation rows under noise std 12.5 per site and bin: the AUROC is the noise's
        assert "auroc_se" in pooled or pooled["auroc_undefined"] == "noise"
        assert all("epsilon" in m for m in record["train"].values())
        tested = record["round"] == selected
        assert set(record["evaluate"]["sites"]) == (SITES if tested else set())
    tested = next(r for r in rounds if r["round"] == selected)["evaluate"]
    assert {"auroc", "auprc", "brier"} <= set(tested["pooled"])
    assert all(m["release_noise_std"] > 0 for m in tested["sites"].values())


def test_epsilon_is_opacus_accounting_of_the_steps_taken_and_within_target(dp_run):
    summary = read_json(dp_run / "summary.json")
    last = _rounds(dp_run)[-1]["train"]
    target = 3.0

    for site, metrics in last.items():
        ledger = open_site_ledger(simulated_policy(site, run_folder=dp_run), site)
        entries = ledger.entries()
        training = [e for e in entries if not e.is_release]
        # the steps and σ the site reported are its ledger's DP-SGD rows ...
        assert metrics["steps"] == sum(e.steps for e in training) > 0
        assert {e.noise_multiplier for e in training} == {metrics["noise_multiplier"]}
        # ... and the run's ε composes them with every release, recomputed with Opacus
        accountant = RDPAccountant()  # independently of federation.core.privacy
        accountant.history = [e.accountant_step for e in entries]
        recomputed = accountant.get_epsilon(delta=entries[-1].delta)
        assert summary["privacy"]["sites"][site]["epsilon"] == pytest.approx(recomputed, rel=1e-6)
        assert recomputed <= target * (1 + 1e-6)
        assert [e.release.split(" ")[0] for e in entries if e.is_release].count("test") == 1


def test_saved_model_rebuilds_from_model_pt(dp_run):
    saved = torch.load(dp_run / "model.pt", weights_only=False)

    model = build_model(ModelSpec(**saved["model_spec"]))
    model.load_state_dict(saved["state_dict"])
    assert saved["round"] == read_json(dp_run / "summary.json")["selection"]["round"]  # the selected one
    assert len(saved["feature_names"]) == saved["model_spec"]["n_features"]
    assert (dp_run / "rounds" / "round_001.pt").is_file()


def test_non_private_run_reaches_pooled_auroc_085_with_per_site_metrics(nodp_run):
    summary = read_json(nodp_run / "summary.json")

    assert summary["metrics"]["pooled"]["auroc"] >= 0.85
    assert set(summary["metrics"]["sites"]) == SITES
    assert summary["privacy"]["enabled"] is False
    # Without DP nothing bounds ε: it is reported as unbounded (null), never as 0.
    assert all(s["epsilon"] is None for s in summary["privacy"]["sites"].values())


def test_multirun_sweep_over_epsilon_gives_one_run_folder_each(tmp_path):
    # The in-process runtime: Hydra's sweep and the sites' ledgers, without a Ray start per job.
    proc = run_launcher(
        tmp_path, "privacy.target_epsilon=1,8", "rounds=2", "federation.runtime=inprocess", multirun=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    runs = sorted((tmp_path / "multirun").glob("*/summary.json"))
    assert len(runs) == 2
    by_target = {}
    for path in runs:
        config = (path.parent / ".hydra" / "config.yaml").read_text()
        target = 1.0 if "target_epsilon: 1" in config else 8.0
        by_target[target] = read_json(path)
    assert set(by_target) == {1.0, 8.0}
    assert max(s["epsilon"] for s in by_target[1.0]["privacy"]["sites"].values()) <= 1.0
    assert max(s["epsilon"] for s in by_target[8.0]["privacy"]["sites"].values()) > 1.0


def test_initial_scaling_uses_every_sites_training_rows(dp_run, nodp_run):
    """Without DP the scaling the model carries is the pooled training mean of all four sites
    (of what each releases at the simulated sites' minimum cell size, 2), not of whichever
    nodes registered first (the server waits for every one). Under DP no site releases a
    statistic: the spec's ranges scale (no ε spent)."""
    from client.releases import released_feature_statistics
    from federation.core import wire
    from federation.core.feature_stats import combine_statistics
    from server.feature_stats import spec_prior

    spec = parse_dataset_spec(compose_config()["data"])
    released = [
        released_feature_statistics(load_site(site_file(spec, s), spec, s).x_train, spec, min_cell=2)
        for s in sorted(SITES)
    ]
    parts = [(r[wire.STATS_COUNT], r[wire.STATS_SUM], r[wire.STATS_SUMSQ]) for r in released]
    pooled_mean, _ = combine_statistics(parts, prior=spec_prior(spec))
    mean = torch.load(nodp_run / "model.pt", weights_only=True)["state_dict"]["preprocess.mean"]
    np.testing.assert_allclose(mean.numpy(), pooled_mean, rtol=1e-5, atol=1e-6)
    dp_mean = torch.load(dp_run / "model.pt", weights_only=True)["state_dict"]["preprocess.mean"]
    np.testing.assert_allclose(dp_mean.numpy(), spec_prior(spec)[0], rtol=1e-6)
    three_sites, _ = combine_statistics(parts[:3], prior=spec_prior(spec))
    assert not np.allclose(mean.numpy(), three_sites, rtol=1e-5, atol=1e-6)  # the test can fail


def test_sites_bootstrap_their_test_auroc_ci_every_round_and_not_on_validation(dp_run):
    """The test release (once, for the round handed out) carries an AUROC interval that
    includes the DP noise; the validation numbers choose, with their standard errors."""
    for record in _rounds(dp_run):
        for site, metrics in record["evaluate"]["sites"].items():
            if metrics["auroc"] is None:  # the noisy class totals left it undefined: no interval
                assert metrics["auroc_ci_low"] is None, site
                continue
            assert metrics["auroc_ci_low"] <= metrics["auroc"] <= metrics["auroc_ci_high"], site
        for site, metrics in record["validation"]["sites"].items():
            assert "auroc_ci_low" not in metrics and "ece" in metrics, (record["round"], site)


def test_default_dp_federation_reaches_pooled_auroc_088(tmp_path, monkeypatch):
    """The default federation (DP ε=3, 10 rounds) with the sites' own randomness still
    reaches pooled AUROC >= 0.88 (the handed-out model scored here exactly; the coordinator's
    figure is a noisy release) within ε 3 for training and releases together. The noise is
    the sites' secret, so runs differ: the mean of three runs (in-process: the same ServerApp
    loop and ClientApp, no Ray) is asserted; benchmarks/results/dp_auroc_spread.md has ten (0.885-0.897)."""
    from federation.coordinator.inprocess import run_config_for, run_in_process

    aurocs = []
    for i in range(3):
        run_dir = tmp_path / str(i)
        monkeypatch.setenv("LHSFED_LEDGER_DIR", str(run_dir / "ledgers"))
        summary = run_in_process(run_config_for([], run_dir), run_dir=run_dir, num_nodes=4)
        aurocs.append(exact_pooled_auroc(run_dir))
        assert max(s["epsilon"] for s in summary["privacy"]["sites"].values()) <= 3.0 * (1 + 1e-6)
    assert len(set(aurocs)) == 3  # three different runs: the noise is fresh each time
    assert np.mean(aurocs) >= 0.88 and min(aurocs) >= 0.87, aurocs
