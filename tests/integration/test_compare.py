"""``lhsfed compare``: the registered champion vs the challenger on every site, in process.

The shared runs are registered as a task's champion (``nodp_run``) and challenger
(``dp_run``) in an embedded SQLite registry under tmp_path, with the run identity the launcher
tags (their run folders). Each site kept, while training, the digest of every global model it
evaluated: the registered model.pt must digest the same, or the site would refuse.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from client.model_record import model_digest, recorded_models
from client.site_policy import simulated_policy
from federation.cli.main import main as lhsfed
from federation.coordinator.registry import log_campaign
from federation.core.run_layout import read_json
from federation.core.safe_load import load_weights_only
from federation.modeler.run_loader import load_settings

TASK = "uci_heart-num"
SITES = {"cleveland", "hungary", "switzerland", "va"}


def _register(run: Path, uri: str, campaign: str, parent: str | None):
    settings = dataclasses.replace(load_settings(run), output_dir=str(run))  # as the launcher has it
    return log_campaign(run, settings, campaign=campaign, uri=uri, parent_version=parent)


@pytest.fixture(scope="module")
def registry(nodp_run, dp_run, tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('compare_registry') / 'lhsfed-registry.db'}"
    champion = _register(nodp_run, uri, "c1", None)
    challenger = _register(dp_run, uri, "c2", champion.version)
    assert (champion.alias, challenger.alias) == ("champion", "challenger")
    return {"uri": uri, "challenger": challenger}


def test_registered_model_digests_as_each_site_recorded_it(nodp_run):
    state = load_weights_only(nodp_run / "model.pt", fix="rerun")["state_dict"]

    for site in SITES:
        recorded = recorded_models(simulated_policy(site, run_folder=nodp_run), str(nodp_run))
        assert model_digest(state) in recorded, site


@pytest.mark.slow
def _sites_spend_on_compare(monkeypatch, tmp_path) -> None:
    """Under DP a compare query is one release at each site's query-epsilon: these sites spend
    20 on it (their policy), so a 37-row test split still gives both AUROCs (at the default
    0.5 a small site's noisy class totals can leave them undefined: docs/privacy.md). Their
    ledgers are named outright: by default the query is charged to the ledgers the compared
    runs spent from, and dp_run's are shared by tests that read them as that run left them."""
    monkeypatch.setenv("LHSFED_QUERY_EPSILON", "20")
    monkeypatch.setenv("LHSFED_MAX_EPSILON", "100")
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "query-ledgers"))


def test_compare_writes_every_site_pooled_difference_and_logs_to_the_challenger(
    registry, tmp_path, capsys, monkeypatch
):
    _sites_spend_on_compare(monkeypatch, tmp_path)
    out = tmp_path / "comparison"

    args = ["--registry-uri", registry["uri"], "--out", str(out), "--threshold", "0.3"]
    code = lhsfed(["compare", TASK, *args, "federation.runtime=inprocess"])

    assert code == 0, capsys.readouterr().err
    document = read_json(out / "comparison.json")
    assert set(document["sites"]) == SITES and document["refused"] == {}
    assert document["champion"]["version"] == "1" and document["challenger"]["version"] == "2"
    for entry in document["sites"].values():
        low, high = entry["difference_ci"]
        if entry["auroc_difference"] is None:  # a noisy release left an AUROC undefined (Switzerland's
            assert low is None  # test split has 2 negatives): no difference, no interval
            continue
        assert low <= entry["auroc_difference"] <= high
        difference = entry["challenger"]["auroc"] - entry["champion"]["auroc"]
        assert entry["auroc_difference"] == pytest.approx(difference)
    pooled = document["pooled"]
    assert pooled["auroc_difference"] == pytest.approx(pooled["challenger_auroc"] - pooled["champion_auroc"])
    low, high = pooled["auroc_difference_ci"]  # the pooled difference's CI, the releases' noise included
    assert low < pooled["auroc_difference"] < high and pooled["threshold"] == 0.3
    assert set(pooled["measures"]) == {"auroc", "ece", "net_benefit"}
    assert all(set(e["measures"]) == {"ece", "net_benefit"} for e in document["sites"].values())
    page = (out / "comparison.html").read_text()
    assert all(site in page for site in SITES) and "pooled" in page
    assert "<h2>Promotion rule</h2>" in page and "Overall: " in page
    out_text = capsys.readouterr().out
    assert "pooled" in out_text and re.search(r"^overall: (PASS|FAIL)$", out_text, re.MULTILINE)
    for part in ("auroc", "calibration", "net_benefit", "sites"):
        assert re.search(rf"^{part}: (pass|FAIL): ", out_text, re.MULTILINE), out_text
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=registry["uri"], registry_uri=registry["uri"])
    run_id = registry["challenger"].run_id
    logged = {a.path for a in client.list_artifacts(run_id, "comparison")}
    assert logged == {"comparison/comparison.json", "comparison/comparison.html"}
    metrics = client.get_run(run_id).data.metrics
    assert metrics["comparison/pooled/auroc_difference"] == pytest.approx(pooled["auroc_difference"])
    assert metrics["comparison/pooled/auroc_difference_ci_low"] == pytest.approx(low)


def test_challenger_of_other_features_is_refused_in_one_line(registry, nodp_run, tmp_path, capsys):
    """A run folder whose model encodes other columns: one line, no comparison folder."""
    import torch

    other = tmp_path / "other"
    other.mkdir()
    payload = load_weights_only(nodp_run / "model.pt", fix="rerun")
    payload["feature_names"] = list(reversed(payload["feature_names"]))
    torch.save(payload, other / "model.pt")
    out = tmp_path / "comparison"

    args = ["--challenger", str(other), "--registry-uri", registry["uri"], "--out", str(out)]
    code = lhsfed(["compare", TASK, *args])

    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "encoded column 1" in err
    assert not out.exists()


@pytest.mark.slow
def test_challenger_run_folder_is_compared_by_every_site(registry, dp_run, tmp_path, monkeypatch):
    """``--challenger RUN_DIR``: the folder is the run identity its sites recorded it under."""
    _sites_spend_on_compare(monkeypatch, tmp_path)
    out = tmp_path / "comparison"

    args = ["--challenger", str(dp_run), "--registry-uri", registry["uri"], "--out", str(out)]
    code = lhsfed(["compare", TASK, *args, "federation.runtime=inprocess"])

    document = read_json(out / "comparison.json")
    assert code == 0 and set(document["sites"]) == SITES and document["refused"] == {}
    assert document["challenger"] == {"version": None, "source": str(dp_run)}
