"""What a site sends back to a drift query: three scores per feature and a withheld mask,
and only for a run it trained in (acceptance M.5; client/app.py ``drift``)."""

from __future__ import annotations

import json

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.app import app as client_app
from client.drift_reference import reference_path
from client.site_policy import site_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec

RUN_DIR = "/runs/champion-run"
RUN_CONFIG = flatten_config(compose_config(["rounds=1"])) | {"run.output_dir": RUN_DIR}
SETTINGS = RunSettings.from_run_config(RUN_CONFIG)
DRIFT_KEYS = {wire.DRIFT_SMD, wire.DRIFT_MISSING_CHANGE, wire.DRIFT_PSI, wire.DRIFT_WITHHELD}
# Under DP the scores are one release: its noise, its own ε and the site's ε after it (scalars)
RELEASE_KEYS = {wire.RELEASE_NOISE_STD, wire.RELEASE_EPSILON, wire.SITE_EPSILON}
# The site's policy spends this much ε on one drift query: enough that its noise on these
# ~300 rows is small against the scores (the default 0.5 is for the site to choose)
QUERY_EPSILON = "200"


@pytest.fixture(scope="module", autouse=True)
def trained(tmp_path_factory):
    """The site trained one message of the champion's run (messages stamped as the
    ServerApp's are; the simulated site keeps its ledger and state in a temporary folder)."""
    with pytest.MonkeyPatch.context() as patch:
        ledgers = tmp_path_factory.mktemp("ledgers")
        patch.setenv("LHSFED_LEDGER_DIR", str(ledgers))
        patch.setenv("LHSFED_QUERY_EPSILON", QUERY_EPSILON)
        patch.setenv("LHSFED_MAX_EPSILON", "10000")
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
        assert not _train().has_error()
        yield ledgers
        TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


def _send(content: RecordDict, message_type: str, run_config: dict) -> Message:
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "lhsfed-mode": "simulation"},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    return client_app(Message(content, dst_node_id=7, message_type=message_type), context)


def _train() -> Message:
    arrays = ArrayRecord(build_model(model_spec(SETTINGS), seed=SETTINGS.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1})})
    return _send(content, MessageType.TRAIN, RUN_CONFIG)


def _drift(run_identity: str) -> Message:
    drift_config = RUN_CONFIG | {"run.output_dir": "/runs/drift-check", "run.task": "drift"}
    content = RecordDict({wire.CONFIG: ConfigRecord({wire.DRIFT_RUN: run_identity})})
    return _send(content, f"{MessageType.QUERY}.{wire.QUERY_DRIFT}", drift_config)


def test_drift_reply_holds_only_per_feature_scores_and_the_withheld_mask():
    reply = _drift(RUN_DIR)

    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    content = reply.content
    assert not content.array_records
    assert set(content.config_records) == {wire.SITE}
    assert dict(content[wire.SITE]) == {wire.SITE_NAME: "cleveland"}
    metrics = dict(content[wire.METRICS])
    assert set(metrics) == DRIFT_KEYS | RELEASE_KEYS
    n_features = len(SETTINGS.data.features)
    assert all(isinstance(metrics[k], list) and len(metrics[k]) == n_features for k in DRIFT_KEYS)
    assert all(isinstance(metrics[k], float) for k in RELEASE_KEYS)
    assert set(metrics[wire.DRIFT_WITHHELD]) <= {0, 1}
    # the same rows as when it trained: no drift beyond the release's noise on any feature
    assert metrics[wire.DRIFT_WITHHELD].count(0) > 0 and 0 < metrics[wire.RELEASE_NOISE_STD] < 0.5
    # (under 0.1 SD: the usual bound of a negligible SMD; PSI and missing-rate change far smaller)
    assert all(abs(v) < 0.1 for key in DRIFT_KEYS - {wire.DRIFT_WITHHELD} for v in metrics[key])


def test_a_drift_query_naming_a_run_the_site_never_trained_in_is_refused():
    answered = _drift(RUN_DIR)  # control: the run it trained in is answered
    refused = _drift("/runs/a-run-this-site-never-joined")

    assert not answered.has_error()
    assert refused.has_error() and not refused.has_content()
    assert refused.error.code == wire.EVALUATION_REFUSED
    assert "holds no reference for that run (it did not train in it)" in refused.error.reason


def test_the_reference_is_written_once_at_the_first_training_message(tmp_path):
    policy = site_policy({"partition-id": 0, "lhsfed-mode": "simulation"}, "cleveland", run_folder=tmp_path)
    first = json.loads(reference_path(policy, RUN_DIR).read_text())
    reference_path(policy, RUN_DIR).write_text(json.dumps(first | {"spec": "kept"}))

    _train()  # answered or refused (the run's budget is spent): the reference stays as it was

    assert json.loads(reference_path(policy, RUN_DIR).read_text())["spec"] == "kept"
    reference_path(policy, RUN_DIR).write_text(json.dumps(first))
    assert first["run_identity"] == RUN_DIR
    assert set(first["features"]) == {f.name for f in SETTINGS.data.features}
