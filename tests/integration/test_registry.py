"""Campaigns, the model registry and a warm start from it, on an embedded SQLite MLflow store.

The shared runs (``nodp_run``, ``dp_run``) are logged as campaigns into a registry under
tmp_path and read back with MLflow's own client; one real ``lhsfed-train campaign=...`` run
(in process, one round) shows the launcher's wiring.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from client.site_spec import spec_hash
from federation.cli.main import main as lhsfed
from federation.coordinator.campaign_record import git_commit
from federation.coordinator.launcher import log_campaign_run
from federation.coordinator.registry import CampaignRequest, log_campaign, resolve_reference
from federation.core.errors import ConfigError
from federation.core.records import read_rounds
from federation.core.run_layout import read_json
from federation.modeler.run_loader import load_saved_model, load_settings
from tests.helpers.deployment_net import free_port
from tests.helpers.runs import REPO, run_launcher

TASK = "uci_heart-num"


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def registry(nodp_run, dp_run, tmp_path_factory):
    """Campaign 1 (DP off, the champion), campaign 2 (DP, warm-started from 1), and a third
    campaign below the bar, all in one SQLite registry."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'lhsfed-registry.db'}"
    first = log_campaign(nodp_run, load_settings(nodp_run), campaign="c1", uri=uri, parent_version=None)
    second = log_campaign(dp_run, load_settings(dp_run), campaign="c2", uri=uri, parent_version=first.version)
    below = log_campaign(
        nodp_run, load_settings(nodp_run), campaign="c3", uri=uri, parent_version="2", min_pooled_auroc=0.999
    )
    return {"uri": uri, "first": first, "second": second, "below": below}


@pytest.mark.slow
def test_campaign_1_is_version_1_champion_with_the_run_as_params_metrics_tags_artifacts(registry, nodp_run):
    client, first = _client(registry["uri"]), registry["first"]

    run = client.get_run(first.run_id)
    version = client.get_model_version_by_alias(TASK, "champion")
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    model_files = [a.path for a in client.list_artifacts(first.run_id, "model")]
    history = client.get_metric_history(first.run_id, "validation/pooled/auroc")

    assert (first.version, first.alias) == ("1", "champion")
    assert (str(version.version), version.run_id) == ("1", first.run_id)
    settings = load_settings(nodp_run)
    assert run.data.params["rounds"] == "10" and run.data.params["privacy.enabled"] == "False"
    assert run.data.params["data.label.column"] == "num"
    assert {f"data.sites.{s}": f for s, f in settings.data.sites.items()}.items() <= run.data.params.items()
    assert json.loads(run.data.params["data.columns"]) == list(settings.data.columns)
    rounds = read_rounds(nodp_run)
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (r["round"], r["validation"]["pooled"]["auroc"]) for r in rounds
    ]
    site = client.get_metric_history(first.run_id, "test/cleveland/auroc")
    assert sorted(m.step for m in site) == [r["round"] for r in rounds]
    summary = read_json(nodp_run / "summary.json")
    assert run.data.metrics["selected_round"] == summary["selection"]["round"]
    assert run.data.metrics["selected/validation/pooled/auroc"] == summary["selection"]["validation"]["auroc"]
    tags = run.data.tags
    assert tags["spec_hash"] == spec_hash(settings.data) == version.tags["spec_hash"]
    assert tags["sites"] == "cleveland,hungary,switzerland,va" and tags["app_version"] == "0.1.0"
    assert tags.get("git_commit") == git_commit(REPO)
    assert version.tags["parent_version"] == "none" and version.tags["epsilon.cleveland"] == "null"
    assert {"metrics.jsonl", "summary.json", "model", "config"} <= artifacts
    assert model_files == ["model/model.pt"]


@pytest.mark.slow
def test_campaign_2_is_a_challenger_with_its_parent_and_epsilon_per_site(registry, dp_run):
    client, second = _client(registry["uri"]), registry["second"]

    version = client.get_model_version(TASK, "2")
    aliases = {a: str(v) for a, v in client.get_registered_model(TASK).aliases.items()}

    assert (second.version, second.alias) == ("2", "challenger")
    assert aliases == {"champion": "1", "challenger": "2"}
    assert version.tags["parent_version"] == "1"
    sites = read_json(dp_run / "summary.json")["privacy"]["sites"]
    assert {s: float(version.tags[f"epsilon.{s}"]) for s in sites} == pytest.approx(
        {s: entry["epsilon"] for s, entry in sites.items()}, rel=1e-5
    )
    history = client.get_metric_history(second.run_id, "epsilon/cleveland")
    assert max(m.value for m in history) == pytest.approx(sites["cleveland"]["epsilon"], rel=1e-9)


@pytest.mark.slow
def test_a_campaign_below_the_bar_is_logged_but_registers_no_version(registry):
    client, below = _client(registry["uri"]), registry["below"]

    versions = client.search_model_versions(f"name='{TASK}'")

    assert below.version is None and below.auroc < 0.999
    assert client.get_run(below.run_id).data.tags["campaign"] == "c3"
    # the same run as c1, which passed the default bar
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert "no version registered" in below.line()


@pytest.mark.slow
def test_a_reference_resolves_to_the_versions_model(registry, nodp_run, dp_run, tmp_path):
    champion = resolve_reference(f"registry:{TASK}@champion", registry["uri"], tmp_path / "a")
    second = resolve_reference(f"registry:{TASK}/2", registry["uri"], tmp_path / "b")

    assert champion.version == "1" and champion.path.read_bytes() == (nodp_run / "model.pt").read_bytes()
    assert second.version == "2" and second.path.read_bytes() == (dp_run / "model.pt").read_bytes()
    assert load_saved_model(champion.path).dataset == load_settings(nodp_run).data
    for ref, says in (
        (f"{TASK}@gold", "no alias gold; its versions: 1, 2, aliases: challenger (version 2), champion"),
        (f"{TASK}/9", "has no version 9"),
        ("nope-num@champion", f"registered tasks: {TASK} "),
    ):
        with pytest.raises(ConfigError, match=re.escape(says)):
            resolve_reference(f"registry:{ref}", registry["uri"], tmp_path / "c")


@pytest.mark.slow
def test_registry_show_and_list_print_versions_aliases_lineage_metrics_epsilon(registry, capsys):
    assert lhsfed(["registry", "show", TASK, "--uri", registry["uri"]]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert lhsfed(["registry", "list", "--uri", registry["uri"]]) == 0
    listed = capsys.readouterr().out.strip()

    assert shown[0].startswith(f"task {TASK} (") and "2 version(s)" in shown[0]
    assert "version 1" in shown[1] and "champion" in shown[1] and "parent none" in shown[1]
    assert "version 2" in shown[2] and "challenger" in shown[2] and "parent 1" in shown[2]
    assert "validation AUROC 0." in shown[1] and "ε cleveland null" in shown[1]
    assert "ε cleveland " in shown[2] and "ε cleveland null" not in shown[2]
    assert listed == f"{TASK}: versions 1, 2; challenger=v2, champion=v1"


@pytest.mark.slow
def test_registry_show_refuses_an_unknown_task_in_one_line(registry, capsys):
    assert lhsfed(["registry", "show", "nope-num", "--uri", registry["uri"]]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"task 'nope-num' is not in the registry {registry['uri']}" in err[0]


def test_registry_refuses_a_missing_or_unreachable_registry_in_one_line(tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    unreachable = f"http://127.0.0.1:{free_port()}"

    codes = [lhsfed(["registry", "list", "--uri", uri]) for uri in (missing, unreachable)]

    err = capsys.readouterr().err.strip().splitlines()
    assert codes == [2, 2] and len(err) == 2
    assert f"no registry at {missing}" in err[0] and not (tmp_path / "none.db").exists()
    assert f"the registry {unreachable} cannot be used" in err[1]


@pytest.mark.slow
def test_a_registry_that_cannot_be_used_after_a_run_is_one_line_naming_the_kept_run(nodp_run):
    request = CampaignRequest("c", "foo://nowhere", 0.6)

    with pytest.raises(ConfigError) as refused:
        log_campaign_run(request, load_settings(nodp_run), nodp_run)

    message = str(refused.value)
    assert message.startswith(
        f"the run finished ({nodp_run}) but campaign=c was not logged: the registry foo://"
    )
    assert "\n" not in message


@pytest.mark.slow
def test_a_report_that_cannot_be_made_is_one_line_and_the_campaign_is_still_logged(
    nodp_run, tmp_path, capsys, monkeypatch
):
    """The report and model card come before the run is logged; when making them fails, one
    console line says so and the run is logged and registered all the same. A run that is not
    a campaign makes neither."""
    from federation.coordinator import launcher

    asked: list[Path] = []

    def broken(run_dir: Path) -> None:
        asked.append(run_dir)
        raise RuntimeError("no plots\nhere")

    monkeypatch.setattr(launcher, "_campaign_files", broken)
    uri = f"sqlite:///{tmp_path / 'lhsfed-registry.db'}"

    log_campaign_run(None, load_settings(nodp_run), nodp_run)  # not a campaign: nothing asked
    assert asked == [] and capsys.readouterr().out == ""
    log_campaign_run(CampaignRequest("c", uri, 0.6), load_settings(nodp_run), nodp_run)

    out = capsys.readouterr().out.splitlines()
    said = [line for line in out if line.startswith("report:")]
    assert asked == [nodp_run] and len(said) == 1
    assert "could not be made (RuntimeError: no plots here); the run is logged without them" in said[0]
    assert len(out) == 2 and f"task {TASK} version 1 = champion" in out[1]
    version = _client(uri).get_model_version_by_alias(TASK, "champion")
    assert [a.path for a in _client(uri).list_artifacts(version.run_id, "model")] == ["model/model.pt"]


@pytest.mark.slow
def test_lhsfed_train_with_campaign_logs_and_registers_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'lhsfed-registry.db'}"

    proc = run_launcher(
        tmp_path,
        "campaign=first",
        "registry.enabled=true",
        f"registry.uri={uri}",
        "federation.runtime=inprocess",
        "rounds=1",
        "privacy=off",
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"task {TASK} version 1 = champion" in proc.stdout
    client = _client(uri)
    version = client.get_model_version_by_alias(TASK, "champion")
    assert client.get_experiment(client.get_run(version.run_id).info.experiment_id).name == "first"
    assert client.get_run(version.run_id).data.params["campaign"] == "first"
    assert (tmp_path / "lhsfed-registry-artifacts").is_dir()  # beside the database, not in the cwd's mlruns
    assert not Path(tmp_path / "mlruns").exists()
    # The campaign made its report and model card itself (lhsfed evaluate, lhsfed export) and logged them.
    run = tmp_path / "run"
    logged = {
        a.path for folder in ("report", "model_card") for a in client.list_artifacts(version.run_id, folder)
    }
    assert logged == {
        "report/report.html",
        "report/report.md",
        "report/evaluation.json",
        "model_card/model_card.json",
    }
    for artifact, there in (
        ("report/report.html", "report.html"),
        ("model_card/model_card.json", "export/model_card.json"),
    ):
        local = client.download_artifacts(version.run_id, artifact, str(tmp_path / "downloaded"))
        assert Path(local).read_bytes() == (run / there).read_bytes()
    card, selected = (
        read_json(run / "export" / "model_card.json"),
        read_json(run / "summary.json")["selection"],
    )
    assert card["metrics"]["evaluated_round"] == card["training"]["rounds"] == selected["round"]
    assert "report:" not in proc.stdout  # nothing failed


@pytest.mark.slow
def test_a_warm_start_from_the_champion_takes_its_weights_and_names_its_version(registry, nodp_run):
    """``init=registry:TASK@champion`` resolves through the registry to version 1 (campaign 1's
    model, bit for bit), the lineage the next campaign records; the download folder is gone."""
    from federation.coordinator.warm_start import prepare_warm_start
    from federation.core.weights_text import decode_state_dict

    warm = prepare_warm_start(
        f"registry:{TASK}@champion", load_settings(nodp_run), registry_uri=registry["uri"]
    )

    want = load_saved_model(nodp_run / "model.pt").model.state_dict()
    got = decode_state_dict(warm.weights)
    assert warm.parent_version == "1"
    assert set(got) == set(want) and all(bool((got[k] == want[k]).all()) for k in want)
