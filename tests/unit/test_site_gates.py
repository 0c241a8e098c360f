"""A hostile coordinator against a site's gates (review findings A1, A2, A5): each attack must
fail, and a control shows the honest path still works, so a refusal is the rule under test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

import client.app as client_module
from client.app import _compared_model
from client.personalize import personalized_path
from client.site import load_this_site
from client.site_errors import RunConfigError
from client.site_policy import simulated_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.errors import ConfigError
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec

PERSONALIZE = f"{MessageType.QUERY}.{wire.QUERY_PERSONALIZE}"
CLEVELAND = 0  # large enough to release its test and validation splits


pytestmark = pytest.mark.usefixtures("as_the_server_process")  # tests/unit/conftest.py


def _config(tmp_path, *overrides: str) -> dict:
    plain = compose_config(["privacy=off", "model=mlp", "rounds=2", *overrides])
    plain["output_dir"] = str(tmp_path / "run")
    return flatten_config(plain)


def _send(run_config: dict, message_type: str, state: dict, server_round: int = 1) -> Message:
    content = RecordDict(
        {wire.ARRAYS: ArrayRecord(state), wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: server_round})}
    )
    context = Context(
        run_id=1, node_id=7, node_config={"partition-id": CLEVELAND, "lhsfed-mode": "simulation"},
        state=RecordDict(), run_config=dict(run_config),
    )  # fmt: skip
    return client_module.app(Message(content, dst_node_id=7, message_type=message_type), context)


def _state(run_config: dict, seed: int) -> dict[str, torch.Tensor]:
    return build_model(model_spec(RunSettings.from_run_config(run_config)), seed=seed).state_dict()


def _probe(honest: dict, age: float) -> dict[str, torch.Tensor]:
    """risk ≈ 1 only for rows aged ``age`` (a ReLU bump on the first feature), ≈ 0 otherwise."""
    probe = {k: torch.zeros_like(v) for k, v in honest.items()}
    probe["preprocess.std"] = torch.ones_like(honest["preprocess.std"])
    for j, offset in enumerate((-0.5, 0.0, 0.5)):
        probe["head.0.weight"][j, 0] = 1.0
        probe["head.0.bias"][j] = -(age + offset)
    probe["head.3.weight"][0, :3] = torch.tensor([2.0, -4.0, 2.0]) * 40
    probe["head.3.bias"][0] = -20.0
    return probe


def _refused(reply: Message, words: str) -> bool:
    return reply.has_error() and reply.error.code == wire.EVALUATION_REFUSED and words in reply.error.reason


# A1 (a): one model per round a site trained


def test_a_second_different_model_for_an_evaluated_round_is_refused(tmp_path):
    config = _config(tmp_path)
    first, other = _state(config, 1), _state(config, 2)
    _send(config, MessageType.TRAIN, first)
    assert not _send(config, MessageType.EVALUATE, first).has_error()

    second = _send(config, MessageType.EVALUATE, other)
    retried = _send(config, MessageType.EVALUATE, first)  # control: the same model again

    assert _refused(second, "one model per round")
    assert not any(ch.isdigit() for ch in second.error.reason)  # the rule only
    assert not retried.has_error(), retried.error.reason


def test_a_round_trained_again_may_have_one_more_model_and_no_more(tmp_path):
    """A resumed run redoes the round it was interrupted in (the ledger keeps both
    trainings): its new model is evaluated; a third model for the round is still refused."""
    config = _config(tmp_path)
    first, redone, third = _state(config, 1), _state(config, 2), _state(config, 3)
    _send(config, MessageType.TRAIN, first)
    assert not _send(config, MessageType.EVALUATE, first).has_error()
    assert _refused(_send(config, MessageType.EVALUATE, redone), "one model per round")

    _send(config | {"run.resume": True}, MessageType.TRAIN, first)  # the round trained again

    assert not _send(config, MessageType.EVALUATE, redone).has_error()
    assert not _send(config, MessageType.EVALUATE, first).has_error()  # still one of its models
    assert _refused(_send(config, MessageType.EVALUATE, third), "one model per round")


def test_resending_a_kept_update_opens_one_more_model_once_and_only_in_a_resume(tmp_path):
    """The same round from the same global model is answered with the kept update
    (client.kept_updates), not trained again: outside a resume it opens no slot for another
    model; in a resume one, once (the resumed aggregate may differ from the stopped one's)."""
    config = _config(tmp_path)
    first, second, third = _state(config, 1), _state(config, 2), _state(config, 3)
    _send(config, MessageType.TRAIN, first)
    assert not _send(config, MessageType.EVALUATE, first).has_error()
    _send(config, MessageType.TRAIN, first)  # not a resume: the kept update, no new slot
    assert _refused(_send(config, MessageType.EVALUATE, second), "one model per round")
    _send(config | {"run.resume": True}, MessageType.TRAIN, first)
    _send(config | {"run.resume": True}, MessageType.TRAIN, first)  # a second resend: nothing more
    assert not _send(config, MessageType.EVALUATE, second).has_error()
    assert _refused(_send(config, MessageType.EVALUATE, third), "one model per round")


# A1 (b): the confusion cells at the threshold under k


def test_the_probe_models_sensitivity_is_withheld_when_a_cell_is_under_k(tmp_path):
    config = _config(tmp_path)
    honest = _state(config, 1)
    data = load_this_site(
        {"partition-id": CLEVELAND, "lhsfed-mode": "simulation"}, RunSettings.from_run_config(config).data
    )
    ages = data.x_test[:, 0]
    values, counts = np.unique(ages[data.y_test == 1], return_counts=True)
    age = float(values[np.argmin(counts)])  # an age held by few positives: TP under k
    _send(config, MessageType.TRAIN, honest)

    reply = _send(config, MessageType.EVALUATE, _probe(honest, age))  # the round's first model

    assert not reply.has_error(), reply.error.reason
    metrics = dict(reply.content[wire.METRICS])
    assert ((ages == age) & (data.y_test == 1)).sum() < 2  # the cell the rate would count
    assert wire.SENSITIVITY not in metrics and wire.SPECIFICITY not in metrics
    assert wire.AUROC in metrics  # the rest of the reply is released as before


# A2: personalize only a recorded model, once, under the run's first plan


def _trained_and_evaluated(config: dict, state: dict) -> None:
    assert not _send(config, MessageType.TRAIN, state).has_error()
    assert not _send(config, MessageType.EVALUATE, state).has_error()


def test_personalize_of_a_model_the_site_did_not_record_is_refused(tmp_path):
    config = _config(tmp_path, "personalize=recalibrate")
    honest = _state(config, 1)
    _trained_and_evaluated(config, honest)

    crafted = _send(config, PERSONALIZE, _state(config, 2))
    answered = _send(config, PERSONALIZE, honest)  # control: the round's recorded model

    assert _refused(crafted, "it was sent as this run's global model")
    assert not answered.has_error(), answered.error.reason


def test_a_second_personalize_of_the_run_is_refused_and_the_kept_model_unchanged(tmp_path):
    config = _config(tmp_path, "personalize=recalibrate")
    honest, later = _state(config, 1), _state(config, 2)
    _trained_and_evaluated(config, honest)
    assert not _send(config, MessageType.TRAIN, later, 2).has_error()
    assert not _send(config, MessageType.EVALUATE, later, 2).has_error()  # also recorded
    assert not _send(config, PERSONALIZE, honest).has_error()
    policy = simulated_policy("cleveland", run_folder=tmp_path / "run")
    kept = personalized_path(policy, config["run.output_dir"])
    before = kept.read_bytes()

    again = _send(config, PERSONALIZE, later)

    assert _refused(again, "once per run")
    assert kept.read_bytes() == before


def test_a_personalize_mode_the_run_did_not_have_at_training_is_refused(tmp_path):
    trained = _config(tmp_path)  # personalize=none when the site trained
    honest = _state(trained, 1)
    _trained_and_evaluated(trained, honest)

    flipped = _send(_config(tmp_path, "personalize=recalibrate"), PERSONALIZE, honest)

    assert _refused(flipped, "plan is fixed at its first training message")


def test_personalize_steps_the_run_did_not_have_at_training_are_refused(tmp_path):
    trained = _config(tmp_path, "personalize=recalibrate", "personalize_steps=3")
    honest = _state(trained, 1)
    _trained_and_evaluated(trained, honest)

    changed = _config(tmp_path, "personalize=recalibrate", "personalize_steps=99")

    assert _refused(_send(changed, PERSONALIZE, honest), "plan is fixed at its first training message")


def test_the_mode_the_run_had_at_training_is_answered(tmp_path):
    """Control of the test above: the same run config as at training personalizes."""
    config = _config(tmp_path, "personalize=recalibrate")
    honest = _state(config, 1)
    _trained_and_evaluated(config, honest)

    assert not _send(config, PERSONALIZE, honest).has_error()


# A5: a huge model spec is refused before anything is built


def test_a_huge_hidden_in_a_compare_spec_is_refused_before_building(tmp_path, monkeypatch):
    config = _config(tmp_path)
    settings = RunSettings.from_run_config(config)
    arrays = ArrayRecord(_state(config, 1))
    built = []
    real = client_module.build_model
    monkeypatch.setattr(client_module, "build_model", lambda *a, **k: built.append(a) or real(*a, **k))
    key = wire.CHAMPION_MODEL_SPEC
    huge = json.dumps(model_spec(settings).to_dict() | {"hidden": 4_000_000})
    wider = json.dumps(model_spec(settings).to_dict() | {"hidden": 64})  # in bounds, wrong shapes

    for spec in (huge, wider):
        with pytest.raises(RunConfigError, match=key):
            _compared_model(settings, ConfigRecord({key: spec}), arrays, key)
    assert built == []  # refused from the shapes alone
    honest = json.dumps(model_spec(settings).to_dict())
    assert _compared_model(settings, ConfigRecord({key: honest}), arrays, key) is not None  # control
    assert len(built) == 1


def test_a_run_config_with_a_huge_hidden_is_refused_in_one_line(tmp_path):
    config = _config(tmp_path) | {"model.hidden": 10**7}

    with pytest.raises(ConfigError, match=r"model.hidden must be in 1..4096") as refused:
        RunSettings.from_run_config(config)

    assert "\n" not in str(refused.value)
    assert RunSettings.from_run_config(_config(tmp_path)).model.hidden == 32  # control
