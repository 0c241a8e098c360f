"""A site that fails or refuses every round: one console line per failure and one saying it
sat out, never a traceback; summary.json and the console say how many sites trained and which
never did, and the run exits 3 (unless allow_absent_sites=true: test_bad_site_run.py), or 2
when that leaves fewer than strategy.min_train_nodes."""

from __future__ import annotations

import pytest

from server.progress import absent_line, budget_left_out, sat_out
from tests.helpers.faulty_client import run_with_faults
from tests.helpers.runs import read_json

pytestmark = pytest.mark.slow
# The launcher's console under test, not the runtime: in process (a raising ClientApp answers
# with an error reply there as under Ray; test_fault_run.py keeps Ray's own handling).
CONFIG = ("rounds=2", "privacy=off", "federation.runtime=inprocess")


def _run(tmp, *overrides, env=None):
    return run_with_faults(tmp, "va:raise", *CONFIG, *overrides, env=env, timeout=600)


def test_sites_that_failed_or_refused_every_round_sit_out_and_the_run_exits_3(tmp_path):
    """va crashes every round; hungary's own policy refuses every round (require-dp with
    privacy=off): two of four sites never train, which min_train_nodes=2 allows."""
    proc = _run(tmp_path, env={"LHSFED_REQUIRE_DP": "hungary=true"})

    assert proc.returncode == 3, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    failures = [line for line in lines if "train: site va" in line]
    assert len(failures) == 2 and all("site error (RuntimeError)" in line for line in failures)
    assert "site va sat out every round: site error (RuntimeError) (details in the site's log)" in lines
    assert "site hungary sat out every round: budget refused: site hungary requires DP" in proc.stdout
    assert "2 of 4 sites trained; never trained: hungary, va" in lines
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("lhsfed-train: error:")]
    assert "2 of 4 sites trained; never trained: hungary, va" in error and "allow_absent_sites=true" in error
    assert "Traceback" not in proc.stdout + proc.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert (summary["sites"], summary["sites_trained"]) == (4, 2)
    assert summary["sites_never_trained"] == ["hungary", "va"]
    assert (tmp_path / "run" / "model.pt").exists()  # the run finished; its status says who is missing
    log = (tmp_path / "run" / "launcher.log").read_text()
    assert "train of site va" in log and "site error (RuntimeError)" in log


def test_below_min_train_nodes_the_run_exits_non_zero_naming_the_site(tmp_path):
    """The control: the same fault with every site required."""
    proc = _run(tmp_path, "strategy.min_train_nodes=4")

    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lhsfed-train: error:") and "va: site error (RuntimeError)" in last
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_absent_line_is_summary_jsons_numbers():
    summary = {"sites": 100, "sites_trained": 96, "sites_never_trained": ["a", "b", "c", "d"]}
    assert absent_line(summary) == "96 of 100 sites trained; never trained: a, b, c, d"
    assert absent_line({"sites": 4, "sites_trained": 4, "sites_never_trained": []}) is None


def _failure(site, reason, stage="train", node=7):
    return {"stage": stage, "node": node, "site": site, "reason": reason}


def test_sat_out_is_the_sites_that_failed_the_train_stage_of_every_round():
    records = [
        {
            "failures": [
                _failure("va", "data check failed"),
                _failure("hungary", "crash"),
                _failure(None, "site configuration error", node=9),
            ]
        },
        {
            "failures": [
                _failure("va", "data check failed"),
                _failure("hungary", "x", stage="evaluate"),
                _failure(None, "site configuration error", node=9),
            ]
        },
    ]
    assert sat_out(records) == {"node 9": "site configuration error", "site va": "data check failed"}
    assert sat_out([]) == {}


def test_budget_left_out_only_when_every_site_refused_the_last_round_for_budget():
    from federation.core import wire

    refused = {
        "train": {},
        "failures": [{**_failure("va", "budget refused: no useful budget"), "code": wire.BUDGET_REFUSED}],
    }
    crashed = {"train": {}, "failures": [{**_failure("va", "site error"), "code": wire.SITE_ERROR}]}
    trained = {"train": {"hungary": {}}, "failures": refused["failures"]}
    assert budget_left_out([trained, refused], wire.BUDGET_REFUSED) == {
        "site va": "budget refused: no useful budget"
    }
    assert budget_left_out([refused, crashed], wire.BUDGET_REFUSED) is None
    assert budget_left_out([refused, trained], wire.BUDGET_REFUSED) is None
