"""A site that fails every round: one console line per failure and one saying it sat out,
never a traceback; the run exits 0 only while strategy.min_train_nodes allows the others
to train without it."""

from __future__ import annotations

import pytest

from server.progress import budget_left_out, sat_out
from tests.helpers.faulty_client import run_with_faults

pytestmark = pytest.mark.slow
# The launcher's console under test, not the runtime: in process (a raising ClientApp answers
# with an error reply there as under Ray; test_fault_run.py keeps Ray's own handling).
CONFIG = ("rounds=2", "privacy=off", "federation.runtime=inprocess")


def _run(tmp, *overrides):
    return run_with_faults(tmp, "va:raise", *CONFIG, *overrides, timeout=600)


def test_a_site_that_failed_every_round_sits_out_in_one_line(tmp_path):
    proc = _run(tmp_path)

    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    failures = [line for line in lines if "train: site va" in line]
    assert len(failures) == 2 and all("site error (RuntimeError)" in line for line in failures)
    assert "site va sat out every round: site error (RuntimeError) (details in the site's log)" in lines
    assert "Traceback" not in proc.stdout + proc.stderr
    log = (tmp_path / "run" / "launcher.log").read_text()
    assert "train of site va" in log and "site error (RuntimeError)" in log


def test_below_min_train_nodes_the_run_exits_non_zero_naming_the_site(tmp_path):
    """The control: the same fault with every site required."""
    proc = _run(tmp_path, "strategy.min_train_nodes=4")

    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lhsfed-train: error:") and "va: site error (RuntimeError)" in last
    assert "Traceback" not in proc.stdout + proc.stderr


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
