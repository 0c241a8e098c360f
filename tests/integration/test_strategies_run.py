"""Every strategy on real federations of the four embedded hospitals (in-process runtime).

One process cannot switch strategy inside Flower's simulation runtime, so these runs use
``federation.coordinator.inprocess``: the same ServerApp loop and ClientApp, without Ray's start-up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from federation.coordinator.inprocess import run_config_for, run_in_process
from federation.core.records import read_rounds
from federation.core.settings import STRATEGY_NAMES
from server.checkpoint import load_resume_state
from tests.helpers.faulty_client import fault_mod, parse_faults

pytestmark = pytest.mark.slow
SITES = ["cleveland", "hungary", "switzerland", "va"]


def _run(run_dir: Path, *overrides: str, faults: str = "", resume: bool = False) -> dict:
    config = run_config_for(list(overrides), run_dir) | ({"run.resume": True} if resume else {})
    mods = [fault_mod(parse_faults(faults))] if faults else []
    return run_in_process(config, run_dir=run_dir, num_nodes=4, mods=mods)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def strategy_runs(tmp_path_factory) -> dict[str, Path]:
    """Each strategy, 3 rounds, DP off."""
    runs = {}
    for name in STRATEGY_NAMES:
        runs[name] = tmp_path_factory.mktemp(name)
        _run(runs[name], f"strategy={name}", "rounds=3", "privacy=off")
    return runs


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_runs_three_rounds(strategy_runs, name):
    records = read_rounds(strategy_runs[name])
    summary = json.loads((strategy_runs[name] / "summary.json").read_text())

    assert [r["round"] for r in records] == [1, 2, 3]
    assert all(r["aggregated"] == SITES and r["rejected"] == [] for r in records)
    assert summary["strategy"] == name and summary["rounds"] == 3
    assert summary["metrics"]["pooled"]["auroc"] > 0.7
    assert load_resume_state(strategy_runs[name]).round == 3


@pytest.mark.parametrize("name", ["fedprox", "fedadam", "fedyogi"])
def test_adaptive_and_proximal_strategies_reach_auroc_080_without_dp(strategy_runs, name):
    summary = json.loads((strategy_runs[name] / "summary.json").read_text())
    assert summary["metrics"]["pooled"]["auroc"] >= 0.80


def test_fedprox_mu_reaches_the_clients(strategy_runs):
    """Same seeds, same data: only the proximal pull can make FedProx differ from FedAvg."""
    prox, avg = _weights(strategy_runs["fedprox"]), _weights(strategy_runs["fedavg"])
    assert any(not torch.equal(prox[k], avg[k]) for k in avg)


def test_fedadam_checkpoint_holds_its_moments(strategy_runs):
    state = load_resume_state(strategy_runs["fedadam"]).strategy
    assert set(state) == {"m_t", "v_t"}
    assert all(torch.isfinite(v).all() and v.abs().sum() > 0 for v in state["v_t"].values())


@pytest.mark.parametrize("name", ["fedmedian", "krum"])
def test_robust_strategies_withstand_a_sign_flipping_site(tmp_path, name):
    summary = _run(tmp_path, f"strategy={name}", "rounds=3", "privacy=off", faults="cleveland:signflip")
    records = read_rounds(tmp_path)

    assert all(r["rejected"] == [] for r in records)  # a flipped update has a normal norm
    assert summary["metrics"]["pooled"]["auroc"] >= 0.78


def test_resume_continues_to_the_same_weights_without_dp(tmp_path):
    """FedAdam (stateful), DP off: 3 rounds then resume to 6 equals 6 rounds in one go."""
    common = ("strategy=fedadam", "privacy=off")
    _run(tmp_path / "whole", *common, "rounds=6")
    _run(tmp_path / "split", *common, "rounds=3")
    _run(tmp_path / "split", *common, "rounds=6", resume=True)

    whole, split = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    assert [r["round"] for r in read_rounds(tmp_path / "split")] == [1, 2, 3, 4, 5, 6]
