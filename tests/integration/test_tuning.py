"""Federated tuning with the Optuna sweeper, every trial accounted in the site ledgers.

Real ``lhsfed-train --multirun +tune=federated`` sweeps (Hydra's basic launcher: trials run one
after another in one process, each a whole simulated federation; ``federation.runtime=inprocess``
runs the same ServerApp loop and ClientApp without Ray's ~15 s start per trial). The ledgers are read back
as the sites wrote them and ε is recomputed with Opacus's RDP analysis, independently of the
project's accounting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from tests.helpers.privacy_runs import rdp_epsilon, round_steps
from tests.helpers.runs import read_json, run_launcher

pytestmark = pytest.mark.slow
SITES = ("cleveland", "hungary", "switzerland", "va")
SWEEP = ("hydra/sweeper=optuna", "+tune=federated", "federation.runtime=inprocess")


def _ledger(ledgers: Path, site: str) -> SiteLedger:
    return SiteLedger(
        ledgers / f"{site}.sqlite", site=site, identity=NodeIdentity.of_key(ledgers / f"{site}.key")
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A 3-trial Optuna sweep, 2 rounds per trial, DP on (ε=3 per trial)."""
    tmp = tmp_path_factory.mktemp("tuning")
    proc = run_launcher(tmp, *SWEEP, "rounds=2", "hydra.sweeper.n_trials=3", multirun=True)
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
    summary, ledgers = read_json(sweep / "sweep_summary.json"), sweep / "ledgers"
    runs = [Path(t["run_dir"]) for t in summary["trials"]]
    for run in runs:  # no trial kept a ledger of its own
        assert not (run / "ledgers").exists()
        assert {p["ledger_path"] for p in read_json(run / "site_policy.json").values()} == {
            str(ledgers / f"{site}.sqlite") for site in SITES
        }
    for site in SITES:
        ledger = _ledger(ledgers, site)
        assert {e.run for e in ledger.entries()} == {str(r) for r in runs}
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
    cap = 3.5
    proc = run_launcher(
        tmp_path,
        *SWEEP,
        "rounds=1",
        "hydra.sweeper.n_trials=2",
        multirun=True,
        env={"LHSFED_MAX_EPSILON": str(cap)},
    )
    sweep = tmp_path / "multirun"
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
