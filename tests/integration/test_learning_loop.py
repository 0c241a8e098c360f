"""The whole learning loop against a real ``mlflow server`` (issue 17, acceptance 1).

Plan/do: campaign 1 on synth hospitals registers version 1 as champion. Check: one hospital's
patients change (synth ``--shift``) and ``lhsfed drift`` flags that hospital and no other;
campaign 2, warm-started from the champion on the current data, registers version 2 with
parent 1; ``lhsfed compare`` writes comparison.json. Act: ``lhsfed promote`` moves the alias
only when the rule passes and refuses otherwise (both branches, on the real comparison, by
the default rule and by a rule it cannot pass / cannot fail).

The server runs on 127.0.0.1 on a free port with a SQLite backend and its own artifact store,
started and stopped here. The same steps on the embedded SQLite URI are each tested in
test_registry.py, test_drift_run.py, test_compare.py and test_promotion.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from federation.cli.main import main as lhsfed
from federation.cli.synth import write_cohorts
from federation.coordinator.promotion import PromotionRule, judge
from federation.core.run_layout import read_json
from tests.helpers.deployment_net import free_port
from tests.helpers.runs import run_launcher

NAME = "synthloop"
TASK = f"{NAME}-readmitted_30d"
SITES = ["hospital_001", "hospital_002", "hospital_003"]
SHIFTED = "hospital_002"
MLFLOW = Path(sys.executable).parent / "mlflow"


@pytest.fixture()
def mlflow_server(tmp_path):
    """``mlflow server`` on 127.0.0.1:PORT (SQLite backend, served artifacts); its URI."""
    port = free_port()
    folder = tmp_path / "mlflow-server"
    folder.mkdir()
    args = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    args += ["--artifacts-destination", str(folder / "artifacts")]
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(args, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not answer in 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=10)
        log.close()


def _hospitals(folder: Path, shift=None) -> Path:
    folder.mkdir()
    write_cohorts(folder, sites=3, rows=900, heterogeneity=0.3, seed=5, name=NAME, shift=shift)
    return folder


def _campaign(tmp: Path, name: str, data: Path, uri: str, env: dict, *extra: str) -> None:
    tmp.mkdir()
    done = run_launcher(
        tmp,
        f"hydra.searchpath=[file://{data}]",
        f"data={NAME}",
        f"federation.data_dir={data}",
        "rounds=1",
        "federation.runtime=inprocess",
        f"campaign={name}",
        f"registry.uri={uri}",
        "registry.min_pooled_auroc=0",
        *extra,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(uri: str) -> str:
    return str(_client(uri).get_model_version_by_alias(TASK, "champion").version)


@pytest.mark.slow
def test_campaign_drift_warm_start_compare_promote_on_an_mlflow_server(
    mlflow_server, tmp_path, monkeypatch, capsys
):
    uri = mlflow_server
    ledgers = tmp_path / "ledgers"  # each hospital's ledger and state, kept across campaigns
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(ledgers))
    before = _hospitals(tmp_path / "before")

    _campaign(tmp_path / "c1", "c1", before, uri, {"LHSFED_LEDGER_DIR": str(ledgers)})
    assert _champion(uri) == "1"

    after = _hospitals(tmp_path / "after", shift={SHIFTED: 1.0})
    monkeypatch.setenv("LHSFED_SITE_DATA_DIR", str(after))  # restored after the in-process runs
    # Each drift or compare query is one DP release at the sites' query-epsilon: these hospitals
    # spend 100 on each (their policy) so the shift stands out of the noise (docs/drift.md)
    monkeypatch.setenv("LHSFED_QUERY_EPSILON", "100")
    monkeypatch.setenv("LHSFED_MAX_EPSILON", "1000")
    sites_now = ["federation.runtime=inprocess", f"federation.data_dir={after}"]
    code = lhsfed(["drift", TASK, "--registry-uri", uri, "--out", str(tmp_path / "drift"), *sites_now])
    assert code == 0, capsys.readouterr().err
    drift = read_json(tmp_path / "drift" / "drift.json")
    assert sorted(drift["sites"]) == SITES and drift["refused"] == {}
    assert {s: e["flagged"] for s, e in drift["sites"].items()} == {s: s == SHIFTED for s in SITES}

    _campaign(
        tmp_path / "c2",
        "c2",
        after,
        uri,
        {"LHSFED_LEDGER_DIR": str(ledgers)},
        f"init=registry:{TASK}@champion",
    )
    second = _client(uri).get_model_version(TASK, "2")
    assert second.tags["parent_version"] == "1" and "challenger" in second.aliases
    # The drift check of its parent goes with the campaign: run folder, MLflow run, report.
    assert read_json(tmp_path / "c2" / "run" / "drift.json") == drift
    logged = [a.path for a in _client(uri).list_artifacts(second.run_id, "drift_before")]
    assert logged == ["drift_before/drift.json"]
    # The campaign made its report and model card (simulation: scored on the sites' rows) and the
    # server holds them with the run.
    client = _client(uri)
    made = {
        a.path for folder in ("report", "model_card") for a in client.list_artifacts(second.run_id, folder)
    }
    assert {"report/report.html", "report/report.md", "model_card/model_card.json"} <= made
    card = client.download_artifacts(second.run_id, "model_card/model_card.json", str(tmp_path / "card"))
    assert read_json(Path(card)) == read_json(tmp_path / "c2" / "run" / "export" / "model_card.json")
    assert lhsfed(["evaluate", str(tmp_path / "c2" / "run"), "--from-rounds"]) == 0
    report = (tmp_path / "c2" / "run" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| hospital 002 | FLAGGED"))
    assert "Drift before this campaign (champion version 1)" in report and "systolic_bp" in row

    code = lhsfed(["compare", TASK, "--registry-uri", uri, "--out", str(tmp_path / "compare"), *sites_now])
    assert code == 0, capsys.readouterr().err
    comparison = read_json(tmp_path / "compare" / "comparison.json")
    assert sorted(comparison["sites"]) == SITES and comparison["refused"] == {}
    assert (comparison["champion"]["version"], comparison["challenger"]["version"]) == ("1", "2")
    assert comparison["pooled"]["auroc_difference"] == pytest.approx(
        comparison["pooled"]["challenger_auroc"] - comparison["pooled"]["champion_auroc"]
    )
    capsys.readouterr()

    # A rule no comparison can pass: refused in one line, the champion unchanged.
    code = lhsfed(["promote", TASK, "2", "--reason", "r", "--uri", uri, "--min-pooled-difference", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not promoted" in err and _champion(uri) == "1"

    # The default rule, on the comparison logged on version 2's run: moves iff it passes.
    passes = judge(comparison, PromotionRule()).passed
    code = lhsfed(["promote", TASK, "2", "--reason", "Q2 campaign", "--uri", uri])
    assert (code, _champion(uri)) == ((0, "2") if passes else (2, "1")), capsys.readouterr()
    if not passes:  # a rule it cannot fail (AUROC differences lie in [-1, 1]) then moves it
        loose = ["--min-pooled-difference", "-1", "--site-ci-floor", "-1.01"]
        loose += ["--ece-margin", "10", "--net-benefit-margin", "10"]  # nor on calibration or net benefit
        assert lhsfed(["promote", TASK, "2", "--reason", "accepted", "--uri", uri, *loose]) == 0
    tags = _client(uri).get_model_version(TASK, "2").tags
    assert _champion(uri) == "2" and tags["promotion.rule_outcome"] == "passed"
    assert tags["promotion.override"] == "false" and tags["promotion.replaced_version"] == "1"
