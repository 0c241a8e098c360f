"""A hostile coordinator re-sends a run (same run.output_dir, so the same run identity) with
another plan: more rounds, a larger ε target, another fine-tuning. The site keeps the plan of
the run's first training message and its fine-tuning happens once per run (review A3)."""

from __future__ import annotations

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.app import app as client_app
from client.budget import FINE_TUNING_ROUND
from client.ledger import open_site_ledger
from client.run_plan import plan_refusal, run_plan
from client.site_policy import simulated_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec

PERSONALIZE = f"{MessageType.QUERY}.{wire.QUERY_PERSONALIZE}"
SITE_INDEX, SITE = 2, "switzerland"  # small and fast
TARGET = 3.0


pytestmark = pytest.mark.usefixtures("as_the_server_process")  # tests/unit/conftest.py


def _config(run_dir, *overrides: str, resume: bool = False) -> dict:
    base = ["rounds=1", "personalize=finetune", "personalize_steps=3", f"privacy.target_epsilon={TARGET}"]
    flat = flatten_config(compose_config([*base, *overrides]))
    return flat | {"run.output_dir": str(run_dir), "run.resume": resume}


def _send(run_config: dict, message_type: str, server_round: int = 1) -> Message:
    settings = RunSettings.from_run_config(run_config)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: server_round})})
    node_config = {"partition-id": SITE_INDEX, "lhsfed-mode": "simulation"}
    context = Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config=run_config)
    return client_app(Message(content, dst_node_id=7, message_type=message_type), context)


def _trained(run_config: dict) -> bool:
    """Train round 1, then be sent its model to evaluate (what personalize may then adapt;
    switzerland's test split is too small to release, but the round's model is recorded)."""
    trained = not _send(run_config, MessageType.TRAIN).has_error()
    _send(run_config, MessageType.EVALUATE)
    return trained


def _entries(run_dir):
    policy = simulated_policy(SITE, run_folder=run_dir)
    return open_site_ledger(policy, SITE).entries(str(run_dir))


def test_a_second_fine_tuning_of_the_run_is_refused_whatever_rounds_and_target_it_says(tmp_path):
    run = tmp_path / "run"
    assert _trained(_config(run))
    assert not _send(_config(run), PERSONALIZE).has_error()

    again = [
        _config(run),  # the same run again
        _config(run, "rounds=2", resume=True),  # a resume may add rounds: still one fine-tuning
        _config(run, "rounds=3", "privacy.target_epsilon=5.0"),  # a new plan for the same run
        _config(run, "rounds=4", "privacy.target_epsilon=6.0", resume=True),
    ]
    replies = [_send(c, PERSONALIZE) for c in again]

    assert all(r.has_error() for r in replies)
    assert "once per run" in replies[1].error.reason  # the kept model (then the ledger) says so
    assert "plan" in replies[2].error.reason and "target_epsilon" in replies[2].error.reason
    entries = _entries(run)
    assert [e.server_round for e in entries if not e.is_release] == [1, FINE_TUNING_ROUND]
    # and the releases: round 1's validation, then the personalized models' test metrics, once
    assert [e.release.split(" ")[0] for e in entries if e.is_release] == ["validation", "test"]
    assert entries[-1].epsilon_run <= TARGET * (1 + 1e-6)


def test_control_the_same_messages_under_a_new_run_identity_are_answered(tmp_path):
    """The refusals above come from the run identity's record, not from the messages."""
    config = _config(tmp_path / "other", "rounds=3", "privacy.target_epsilon=5.0")

    assert _trained(config)
    assert not _send(config, PERSONALIZE).has_error()


def test_the_fine_tuning_entry_is_no_trained_round(tmp_path):
    run = tmp_path / "run"
    assert _trained(_config(run))
    assert not _send(_config(run), PERSONALIZE).has_error()

    reply = _send(_config(run), MessageType.EVALUATE, server_round=FINE_TUNING_ROUND)

    assert reply.has_error() and f"did not train round {FINE_TUNING_ROUND}" in reply.error.reason


def test_a_resume_continues_the_plan_and_may_only_add_rounds(tmp_path):
    run = tmp_path / "run"
    assert not _send(_config(run, "rounds=2"), MessageType.TRAIN).has_error()

    larger_target = _config(run, "rounds=2", "privacy.target_epsilon=6.0", resume=True)
    changed_target = _send(larger_target, MessageType.TRAIN, 2)
    not_a_resume = _send(_config(run, "rounds=3"), MessageType.TRAIN, 2)
    same_plan = _send(_config(run, "rounds=2", resume=True), MessageType.TRAIN, 2)
    extended = _send(_config(run, "rounds=3", resume=True), MessageType.TRAIN, 3)
    fewer = _send(_config(run, "rounds=2", resume=True), MessageType.TRAIN, 2)

    assert changed_target.has_error() and "target_epsilon" in changed_target.error.reason
    assert not_a_resume.has_error() and "rounds=3 (was 2)" in not_a_resume.error.reason
    assert not same_plan.has_error() and not extended.has_error()
    assert fewer.has_error() and "rounds=2 (was 3)" in fewer.error.reason
    entries = _entries(run)
    assert [e.server_round for e in entries] == [1, 2, 3]
    assert entries[-1].epsilon_run <= TARGET * (1 + 1e-6)


def test_plan_refusal_names_each_change():
    settings = RunSettings.from_run_config(flatten_config(compose_config(["rounds=2"])))
    recorded = run_plan(settings) | {"personalize_steps": 99}

    refused = plan_refusal(recorded, settings)

    assert plan_refusal(None, settings) is None and plan_refusal(run_plan(settings), settings) is None
    assert refused and "personalize_steps=10 (was 99)" in refused and "\n" not in refused
