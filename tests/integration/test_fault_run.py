"""A real ``lhsfed-train`` federation (Flower simulation runtime) with misbehaving sites.

The simulated sites run the test-only ClientApp of ``tests/helpers/faulty_client.py`` (the
hospital's ClientApp inside a fault mod), chosen by the launcher's ``federation.client_app``.
va sends NaN weights in round 1, a 1000x update in round 2 and a wrong shape in round 3;
hungary crashes in round 2 and must be back in round 3.
"""

from __future__ import annotations

import json

import pytest

from federation.core.records import read_rounds
from tests.helpers.faulty_client import run_with_faults
from tests.helpers.runs import ledger_folder

pytestmark = pytest.mark.slow
FAULTS = "va:nan@1,va:scale@2,va:shape@3,hungary:raise@2"


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fault_run")
    proc = run_with_faults(tmp, FAULTS, "rounds=3", "privacy=off")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", proc


def test_each_broken_update_is_rejected_with_its_reason(fault_run):
    run_dir, _ = fault_run
    rejected = [[(r["site"], r["reason"]) for r in rec["rejected"]] for rec in read_rounds(run_dir)]

    assert [[site for site, _ in round_] for round_ in rejected] == [["va"], ["va"], ["va"]]
    assert "non-finite" in rejected[0][0][1]
    assert "exceeds the round's bound" in rejected[1][0][1]
    assert "has shape" in rejected[2][0][1]


def test_rejections_are_logged_with_site_and_reason(fault_run):
    run_dir, _ = fault_run
    log = "\n".join(p.read_text() for p in run_dir.glob("*.log"))
    for reason in ("non-finite", "exceeds the round's bound", "has shape"):
        assert "rejected the update of site va" in log and reason in log


def test_crashed_site_is_skipped_then_rejoins(fault_run):
    run_dir, proc = fault_run
    records = read_rounds(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())

    assert records[0]["aggregated"] == ["cleveland", "hungary", "switzerland"]
    assert records[1]["aggregated"] == ["cleveland", "switzerland"]  # hungary crashed, va rejected
    (crash,) = records[1]["failures"]
    # The site sends a category, never the exception's text (that stays in its log); the
    # server names the site.
    assert crash["reason"] == "site error (RuntimeError) (details in the site's log)"
    assert (crash["stage"], crash["site"]) == ("train", "hungary") and crash["node"] > 1
    assert "injected test fault: site hungary crashed" in (ledger_folder(run_dir) / "site.log").read_text()
    assert records[2]["aggregated"] == ["cleveland", "hungary", "switzerland"]
    assert records[2]["failures"] == []
    assert summary["rounds"] == 3 and summary["metrics"]["pooled"]["auroc"] > 0.7
    assert f"run folder: {run_dir}" in proc.stdout  # the launcher finished normally
