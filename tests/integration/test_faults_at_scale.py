"""Faults in a real deployment (issue S, item 5), through benchmarks/deployment_faults.py on a
small network of its own: three hospitals (the last behind a relay that can cut its network),
a TLS SuperLink with node authentication and its state database behind the Fleet-only proxy.

One run carries two faults, as CI can afford one such run (the benchmark, at ten hospitals,
has each fault in a run of its own: benchmarks/results/faults.md):

- the relayed hospital's network is cut for a minute from the moment it has round 1's train
  message: it trains and pays, its update cannot leave, and rounds of 30 s go on without it;
- once the two others have pushed their round-2 updates, the SuperLink's whole process tree is
  SIGKILLed (a container kill) and started again on its state database; then, with the cut
  hospital's network back, ``lhsfed-train resume=RUN``.

Checked: what the coordinator's console said, what the run folder keeps, and what each site's
ledger holds against summary.json. The third fault, SIGKILL of a hospital mid-round, is
test_deployment.py's killed-node test (its ledger and summary checks included).
"""

from __future__ import annotations

import re

import pytest

from benchmarks.deployment_faults import FaultNetwork, fault_superlink

pytestmark = pytest.mark.slow
ROUNDS = 2


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    fn = FaultNetwork(tmp_path_factory.mktemp("faults"), n=3, rows_per_site=150)
    try:
        fn.start()
        yield fn.sites, fault_superlink(fn, rounds=ROUNDS, when="replies", cut_s=60, round_timeout=30)
    finally:
        fn.stop()


def _training_rounds(rows: list[dict]) -> list[int]:
    return [r["round"] for r in rows if r["release"] == "training"]


def test_a_killed_superlink_ends_the_run_with_one_line_naming_the_resume(faults):
    _, fault = faults
    first = fault["runs"][0]
    assert first["exit"] == 2
    errors = [line for line in first["console"] if "error" in line.lower()]
    assert len(errors) == 1, first["console"]  # one line: no traceback, not the flwr CLI's panel
    (line,) = errors
    assert re.search(r"stopped answering during run \d+; [12] round\(s\) are checkpointed in ", line), line
    assert f"continue with lhsfed-train resume={fault['run_dir']} " in line


def test_the_cut_hospital_is_said_and_the_round_goes_on_without_it(faults):
    sites, fault = faults
    cut = fault["cut"]
    first = fault["runs"][0]["console"]
    assert any(f"round 1 train: site {cut} " in line and "no reply within" in line for line in first), first
    round_1 = fault["rounds"][0]
    assert round_1["aggregated"] == sorted(set(sites) - {cut})


def test_the_resumed_run_finishes_with_every_hospital_and_the_folder_keeps_every_round(faults):
    sites, fault = faults
    resumed = fault["runs"][1]
    assert resumed["exit"] == 0, resumed["console"][-10:]
    assert [r["round"] for r in fault["rounds"]] == list(range(1, ROUNDS + 1))
    assert fault["rounds"][-1]["aggregated"] == sorted(sites)
    kept = {"checkpoint.pt", "metrics.jsonl", "summary.json", "model.pt", "launcher.log"}
    assert kept <= set(fault["run_folder"])


def test_no_site_paid_twice_for_the_round_the_superlink_lost(faults):
    """The two hospitals had trained round 2 and kept their updates: the resumed run was told
    they had paid, and got the same updates at no new charge (client.kept_updates)."""
    sites, fault = faults
    resumed = fault["runs"][1]["console"]
    for site in set(sites) - {fault["cut"]}:
        assert _training_rounds(fault["ledgers"][site]) == [1, 2], fault["ledgers"][site]
        said = f"resumed after round 1: ε charged at site {site} for round(s) 2 "
        assert any(line.startswith(said) for line in resumed)


def test_the_cut_hospitals_round_1_charge_is_said_and_no_stale_round_was_trained(faults):
    """It paid for round 1 and its update never arrived: summary.json and the run's last line
    say so from its own ledger list. After its network was back it trained only the resumed
    round 2: the first attempt's round-2 message had lived only as long as its round
    (server/exchange.py), so it was not handed a round nobody would read."""
    _, fault = faults
    cut, privacy = fault["cut"], fault["privacy"]
    assert _training_rounds(fault["ledgers"][cut]) == [1, 2]
    assert privacy["charged_not_aggregated"] == {cut: [1]}
    assert privacy["unconfirmed"] == {}
    line = next(line for line in fault["runs"][1]["console"] if line.startswith("ε charged for updates"))
    assert line.startswith(f"ε charged for updates no aggregate used: site {cut} round 1 (")


def test_summary_epsilon_of_every_site_is_its_ledgers(faults):
    _, fault = faults
    for site, rows in fault["ledgers"].items():
        assert fault["privacy"]["sites"][site]["epsilon"] == pytest.approx(rows[-1]["epsilon_run"], abs=1e-3)
