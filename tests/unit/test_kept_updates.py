"""A round sent again from the same global model (a resumed run after its reply was lost) gets
the update the site already paid for, at no new charge; a different model is a new training,
charged as any (client.kept_updates)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.ledger import open_site_ledger
from client.site_policy import simulated_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec
from tests.helpers.simulated_site import send_to_site

RUN_CONFIG = flatten_config(compose_config(["rounds=2"]))
SETTINGS = RunSettings.from_run_config(RUN_CONFIG)
SITE = "switzerland"  # partition 2


@pytest.fixture(autouse=True)
def _as_the_server_process(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


def _train(seed: int):
    arrays = ArrayRecord(build_model(model_spec(SETTINGS), seed=seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1})})
    reply = send_to_site(RUN_CONFIG, MessageType.TRAIN, content, partition=2)
    assert not reply.has_error(), reply.error
    return reply


def _trainings(tmp_path) -> list[int]:
    ledger = open_site_ledger(simulated_policy(SITE, run_folder=tmp_path), SITE)
    return [e.server_round for e in ledger.entries() if not e.is_release]


def test_the_same_round_from_the_same_model_is_answered_with_the_kept_update_at_no_charge(tmp_path):
    first = _train(seed=SETTINGS.seed)
    spent = first.content[wire.METRICS][wire.EPSILON]
    again = _train(seed=SETTINGS.seed)
    for name in first.content[wire.ARRAYS]:
        np.testing.assert_array_equal(
            again.content[wire.ARRAYS][name].numpy(), first.content[wire.ARRAYS][name].numpy()
        )  # the same DP output (a new training would draw new noise)
    assert again.content[wire.METRICS][wire.EPSILON] == pytest.approx(spent)
    assert list(again.content[wire.METRICS][wire.CHARGED_ROUNDS]) == [1]


def test_a_different_model_for_the_round_is_trained_and_charged_again(tmp_path):
    first = _train(seed=SETTINGS.seed)
    other = _train(seed=SETTINGS.seed + 1)
    assert list(other.content[wire.METRICS][wire.CHARGED_ROUNDS]) == [1, 1]
    assert other.content[wire.METRICS][wire.EPSILON] > first.content[wire.METRICS][wire.EPSILON]


def test_a_policy_tightened_since_refuses_the_kept_update_too(tmp_path, monkeypatch):
    """Trained without DP (the simulated site allowed it), then its hospital requires DP: the
    resend is refused as a training would be, not served from what was kept."""
    exact = flatten_config(compose_config(["rounds=2", "privacy=off"]))
    arrays = ArrayRecord(build_model(model_spec(SETTINGS), seed=SETTINGS.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1})})
    monkeypatch.setenv("LHSFED_REQUIRE_DP", "false")
    assert not send_to_site(exact, MessageType.TRAIN, content, partition=2).has_error()
    monkeypatch.setenv("LHSFED_REQUIRE_DP", "true")
    again = send_to_site(exact, MessageType.TRAIN, content, partition=2)
    assert again.has_error() and "requires DP" in again.error.reason
