"""Federated tuning with the Optuna sweeper, every trial accounted in the site ledgers.

Real ``lhsfed-train --multirun +tune=federated`` sweeps (Hydra's basic launcher: trials run one
after another in one process, each a whole simulated federation; ``federation.runtime=inprocess``
runs the same ServerApp loop and ClientApp without Ray's ~15 s start per trial). The ledgers are read back
as the sites wrote them and ε is recomputed with Opacus's RDP analysis, independently of the
project's accounting. The sweep's trials spend from the task's shared ledgers (nothing said
about ledgers: ``outputs/ledgers/uci_heart-num`` under the working directory), are logged as
campaigns, and the whole search's ε is what sweep_summary.json, the report of a trial and
``lhsfed registry show`` give for every version the search registered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.modeler.report_format import fmt
from tests.helpers.epsilon_views import registry_show, report_sites, shown_per_site
from tests.helpers.privacy_runs import rdp_epsilon, round_steps
from tests.helpers.runs import read_json, run_launcher

pytestmark = pytest.mark.slow
SITES = ("cleveland", "hungary", "switzerland", "va")
SWEEP = ("hydra/sweeper=optuna", "+tune=federated", "federation.runtime=inprocess")
TASK = "uci_heart-num"


def _shared(sweep: Path) -> Path:
    """The task's simulated ledgers under the sweep's working directory."""
    return sweep.parent / "outputs" / "ledgers" / TASK


def _uri(sweep: Path) -> str:
    return f"sqlite:///{sweep.parent / 'registry.db'}"


def _ledger(ledgers: Path, site: str) -> SiteLedger:
    return SiteLedger(
        ledgers / f"{site}.sqlite", site=site, identity=NodeIdentity.of_key(ledgers / f"{site}.key")
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A 3-trial Optuna sweep, 2 rounds per trial, DP on (ε=3 per trial)."""
    tmp = tmp_path_factory.mktemp("tuning")
    registry = ("campaign=search", f"registry.uri={_uri(tmp / 'multirun')}", "registry.min_pooled_auroc=0")
    proc = run_launcher(tmp, *SWEEP, *registry, "rounds=2", "hydra.sweeper.n_trials=3", multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return tmp / "multirun"


def test_three_trials_complete_and_the_best_is_the_lowest_validation_loss(sweep):
    summary = read_json(sweep / "sweep_summary.json")
    trials = summary["trials"]
    assert [t["trial"] for t in trials] == ["0", "1", "2"]
    assert all(t["status"] == "complete" for t in trials)
    for trial in trials:  # each loss is the trial's own selected round, from its summary
        selection = read_json(Path(trial["run_dir"]) / "summary.json")["selection"]
        assert trial["validation_loss"] == selection["validation"]["loss"]
    best = min(trials, key=lambda t: t["validation_loss"])
    assert summary["best"]["trial"] == best["trial"]
    assert "+tune=federated" not in summary["best"]["command"]
    # What Optuna minimised is what main returned: the pooled validation loss.
    optuna = OmegaConf.load(sweep / "optimization_results.yaml")
    assert optuna.best_value == pytest.approx(best["validation_loss"], rel=1e-12)


def test_the_site_ledgers_hold_every_trials_steps(sweep):
    summary, ledgers = read_json(sweep / "sweep_summary.json"), _shared(sweep)
    runs = [Path(t["run_dir"]) for t in summary["trials"]]
    for run in runs:  # no trial kept a ledger of its own
        assert not (run / "ledgers").exists()
        assert {p["ledger_path"] for p in read_json(run / "site_policy.json").values()} == {
            str(ledgers / f"{site}.sqlite") for site in SITES
        }
    for site in SITES:
        ledger = _ledger(ledgers, site)
        assert {e.run for e in ledger.entries()} == {str(r) for r in runs}
        # every trial's releases are charged too (validation each round, the test split once)
        assert {e.run for e in ledger.entries() if e.is_release} == {str(r) for r in runs}
        for run in runs:  # the ledger's steps are the steps the server saw the site take
            np.testing.assert_allclose(
                ledger.training_history(str(run)), list(round_steps(run, site).values()), rtol=1e-12
            )
        searched = rdp_epsilon(ledger.history())  # every trial's training and releases
        assert ledger.last_total() == pytest.approx(searched, rel=1e-9)
        reported = summary["privacy"]["sites"][site]
        assert reported["epsilon_search"] == pytest.approx(searched, rel=1e-9)
        assert reported["steps"] == sum(n for _, _, n in ledger.training_history())
        per_trial = [read_json(r / "summary.json")["privacy"]["sites"][site]["epsilon"] for r in runs]
        assert max(per_trial) <= 3.0 + 1e-6 < searched  # the search costs more than any trial


def test_a_trial_the_site_cap_refuses_stops_the_sweep_with_one_line(tmp_path):
    # Trial 0 spends ε≈3 at each site; trial 1's first round would bring every site to ≈4 > 3.5.
    # Fresh ledgers: one folder of the sweep's own, shared by its trials (and said so).
    cap = 3.5
    proc = run_launcher(
        tmp_path,
        *SWEEP,
        "federation.fresh_ledgers=true",
        "rounds=1",
        "hydra.sweeper.n_trials=2",
        multirun=True,
        env={"LHSFED_MAX_EPSILON": str(cap)},
    )
    sweep = tmp_path / "multirun"
    said = "fresh ledgers: ε of earlier campaigns is not counted (the sites' ledgers start empty in"
    assert f"{said} {sweep / 'ledgers'})" in proc.stdout
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lhsfed-train: error:")]
    assert len(errors) == 1 and errors[0].startswith("lhsfed-train: error: trial 1 ")
    summary = read_json(sweep / "sweep_summary.json")
    assert [t["status"] for t in summary["trials"]] == ["complete", "failed"]
    for site in SITES:
        ledger = _ledger(sweep / "ledgers", site)
        assert {e.run for e in ledger.entries()} == {summary["trials"][0]["run_dir"]}
        assert rdp_epsilon(ledger.history()) <= cap


def test_the_whole_search_is_shown_in_the_summary_the_report_and_the_registry(sweep, capsys):
    """Per site, the ε the search cost (every trial's rows) and the site's lifetime ε after
    it, both recomputed from the ledger, are what sweep_summary.json, a trial's report and
    every registered version of the search show."""
    summary = read_json(sweep / "sweep_summary.json")
    runs = {t["run_dir"] for t in summary["trials"]}
    best = Path(summary["best"]["run_dir"])
    rows = report_sites(best, capsys)
    shown = registry_show(_uri(sweep), TASK, capsys)
    versions = [line for line in shown if line.strip().startswith("version ")]
    searches = [line for line in shown if "search of 3 trials" in line]
    assert versions and len(searches) == len(versions)  # every version the search registered
    for site in SITES:
        ledger = _ledger(_shared(sweep), site)
        search = rdp_epsilon([e.accountant_step for e in ledger.entries() if e.run in runs])
        lifetime = rdp_epsilon(ledger.history())
        reported = summary["privacy"]["sites"][site]
        assert reported["epsilon_search"] == pytest.approx(search, rel=1e-9)
        assert reported["epsilon_site_total"] == pytest.approx(lifetime, rel=1e-9)
        assert rows[site]["ε of the search (3 trials)"] == fmt(search)
        assert rows[site]["site total ε after the search"] == fmt(lifetime)
        this_run = read_json(best / "summary.json")["privacy"]["sites"][site]["epsilon"]
        assert rows[site]["ε spent (this run)"] == fmt(this_run) and this_run < search
        for line in searches:
            assert shown_per_site(line, "search of 3 trials: ε")[site] == pytest.approx(search, rel=1e-5)
            assert shown_per_site(line, "site total ε after it")[site] == pytest.approx(lifetime, rel=1e-5)


def _finite(metrics: dict) -> dict[str, float]:
    """The numbers a campaign logs of a summary section (campaign_record._numbers' rule)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
    }


def test_the_sweep_is_one_mlflow_run_and_each_trial_its_child_run(sweep, tmp_path):
    """campaign= on a sweep: one MLflow run for the sweep (its sweep_summary.json, the search's ε
    per site, the chosen trial), each trial a child run (mlflow.parentRunId) with the metrics of
    its own summary.json, its report and model card; the versions are the trials' runs."""
    from mlflow import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    uri = _uri(sweep)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    summary = read_json(sweep / "sweep_summary.json")
    runs = client.search_runs([client.get_experiment_by_name("search").experiment_id])
    parents = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 4
    parent = parents[0]
    children = {r.data.tags["sweep_trial"]: r for r in runs if r is not parent}
    assert {r.data.tags[MLFLOW_PARENT_RUN_ID] for r in children.values()} == {parent.info.run_id}
    assert sorted(children) == [t["trial"] for t in summary["trials"]] == ["0", "1", "2"]
    for trial in summary["trials"]:
        run, own = children[trial["trial"]], read_json(Path(trial["run_dir"]) / "summary.json")
        logged = run.data.metrics
        assert run.data.tags["run_identity"] == trial["run_dir"] and run.data.params["rounds"] == "2"
        assert logged["selected_round"] == own["selection"]["round"]
        for split, numbers in (
            ("validation", own["selection"]["validation"]),
            ("test", own["metrics"]["pooled"]),
        ):
            want = {f"selected/{split}/pooled/{k}": v for k, v in _finite(numbers).items()}
            assert want and {k: logged[k] for k in want} == pytest.approx(want, rel=1e-12)
        for site in SITES:  # this trial's ε, not the search's
            assert logged[f"epsilon/{site}"] == pytest.approx(
                own["privacy"]["sites"][site]["epsilon"], rel=1e-12
            )
        files = {
            a.path
            for folder in ("report", "model_card")
            for a in client.list_artifacts(run.info.run_id, folder)
        }
        assert {"report/report.html", "report/report.md", "model_card/model_card.json"} <= files
        card = client.download_artifacts(run.info.run_id, "model_card/model_card.json", str(tmp_path))
        assert read_json(Path(card)) == read_json(Path(trial["run_dir"]) / "export" / "model_card.json")
    # registration as before: every trial passed the bar (0), each its own version
    versions = client.search_model_versions(f"name='{TASK}'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in children.values())

    best = summary["best"]
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep_dir"] == str(sweep.resolve())
    assert parent.data.tags["best_trial"] == best["trial"]
    assert parent.data.tags["best_run_id"] == children[best["trial"]].info.run_id
    assert parent.data.tags["best_command"] == best["command"]
    assert parent.data.metrics["best/validation_loss"] == pytest.approx(best["validation_loss"], rel=1e-12)
    assert parent.data.metrics["trials"] == 3
    for site in SITES:
        spent = summary["privacy"]["sites"][site]
        assert parent.data.metrics[f"search_epsilon/{site}"] == pytest.approx(
            spent["epsilon_search"], rel=1e-12
        )
        assert parent.data.metrics[f"search_site_epsilon/{site}"] == pytest.approx(
            spent["epsilon_site_total"], rel=1e-12
        )
    logged_summary = client.download_artifacts(parent.info.run_id, "sweep_summary.json", str(tmp_path))
    assert read_json(Path(logged_summary)) == summary
