"""``lhsfed drift`` end to end: a campaign on synth hospitals registers the champion, one
hospital's data then moves (synth --shift), and the drift run flags that site and no other
(issue 17, M.6; acceptance 1's drift step on the embedded SQLite registry)."""

from __future__ import annotations

import pytest

from client.ledger import open_site_ledger
from client.site_policy import simulated_policy
from federation.cli.main import main as lhsfed
from federation.cli.synth import write_cohorts
from federation.core.run_layout import LEDGERS, read_json
from tests.helpers.runs import ledger_folder, run_launcher

NAME = "synthdrift"
TASK = f"{NAME}-readmitted_30d"
SITES = ["hospital_001", "hospital_002", "hospital_003"]
SHIFTED = "hospital_002"


def _hospitals(folder, shift=None):
    folder.mkdir()
    write_cohorts(folder, sites=3, rows=900, heterogeneity=0.3, seed=5, name=NAME, shift=shift)
    return folder


@pytest.mark.slow
def test_drift_flags_the_shifted_site_and_no_other(tmp_path, monkeypatch, capsys):
    before = _hospitals(tmp_path / "before")
    uri = f"sqlite:///{tmp_path / 'lhsfed-registry.db'}"
    campaign = run_launcher(
        tmp_path,
        f"hydra.searchpath=[file://{before}]",
        f"data={NAME}",
        f"federation.data_dir={before}",
        "rounds=1",
        "federation.runtime=inprocess",
        "campaign=c1",
        f"registry.uri={uri}",
        "registry.min_pooled_auroc=0",
    )
    assert campaign.returncode == 0, campaign.stderr[-3000:]
    after = _hospitals(tmp_path / "after", shift={SHIFTED: 1.0})
    monkeypatch.setenv("LHSFED_SITE_DATA_DIR", str(after))  # restored after the in-process run
    # Under DP a drift query is one release at each site's query-epsilon: these sites spend 100 on
    # it (their policy), so its noise is small against a real shift in ~18 features of 900
    # rows (0.5, the default, is not: docs/drift.md)
    monkeypatch.setenv("LHSFED_QUERY_EPSILON", "100")
    monkeypatch.setenv("LHSFED_MAX_EPSILON", "1000")

    code = lhsfed(
        [
            "drift",
            TASK,
            "--registry-uri",
            uri,
            "--out",
            str(tmp_path / "drift"),
            "federation.runtime=inprocess",
            f"federation.data_dir={after}",
        ]
    )

    console = capsys.readouterr().out
    assert code == 0
    record = read_json(tmp_path / "drift" / "drift.json")
    assert record["task"] == TASK
    assert record["champion"] == {"version": "1", "run_identity": str(tmp_path / "run")}
    assert record["thresholds"] == {"smd": 0.2, "psi": 0.25, "missing": 0.1}
    assert record["refused"] == {} and sorted(record["sites"]) == SITES
    assert {s: e["flagged"] for s, e in record["sites"].items()} == {s: s == SHIFTED for s in SITES}
    moved = record["sites"][SHIFTED]["features"]["systolic_bp"]
    assert moved["flagged"] and moved["smd"] > 0.5 and moved["psi"] > 0.25
    # hospital_001's rows are the same before and after: its scores are DP noise alone, well
    # under the flag thresholds (0.2, 0.25) but not within 0.05 every time (0.0546 seen once)
    same = record["sites"]["hospital_001"]["features"]["systolic_bp"]
    assert abs(same["smd"]) < 0.1 and same["psi"] < 0.1 and abs(same["missing_change"]) < 0.02
    assert f"{SHIFTED}: DRIFT in" in console and "hospital_001: no drift flagged" in console
    # the query is charged to the ledgers the champion's campaign spent from (the task's,
    # shared): the same simulated patients' lifetime ε counts it; nothing in the query's folder
    shared = ledger_folder(tmp_path / "run")
    for site in SITES:
        ledger = open_site_ledger(simulated_policy(site, run_folder=tmp_path / "run"), site)
        assert ledger.path.parent == shared
        drift_rows = [e for e in ledger.entries() if e.release.startswith("drift of")]
        assert len(drift_rows) == 1 and drift_rows[0].epsilon_total > drift_rows[0].epsilon_run
    assert not (tmp_path / "drift" / LEDGERS).exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(TASK, "champion")
    assert [a.path for a in client.list_artifacts(champion.run_id, "drift")] == ["drift/drift.json"]
    # a run's data spec is the champion's, and an earlier drift.json is never overwritten
    for out, extra, message in (
        ("other", ["data=uci_heart"], "override 'data=uci_heart': a drift run's data spec is the champion's"),
        ("drift", [], "already holds a drift.json; give a new folder"),
    ):
        argv = ["drift", TASK, "--registry-uri", uri, "--out", str(tmp_path / out), *extra]
        assert lhsfed(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
