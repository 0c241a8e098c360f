"""A site's compare answer: only for global models it was sent, and only aggregates.

The attack: a coordinator has the site score a model it crafted (one weight changed from a
model the site did see); the site must refuse. The control: once the same crafted model was
sent to the site as a global model in a run it trained in, it is answered, so the refusal
is the digest rule and not something else.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.comparison import paired_auroc_difference
from client.model_record import model_digest
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.metrics import HIST_BINS
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec
from federation.core.weights_text import encode_state_dict
from server.comparison import Candidate, compare_content
from tests.helpers.simulated_site import send_to_site

SITE = 2  # switzerland


@pytest.fixture
def run_config(tmp_path, monkeypatch):
    """A one-run federation config whose site keeps its ledger (and state) under tmp_path."""
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    plain = compose_config(["privacy=off"])
    plain["output_dir"] = str(tmp_path / "run")
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield flatten_config(plain)
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


def _send(run_config: dict, message_type: str, content: RecordDict) -> Message:
    return send_to_site(run_config, message_type, content, partition=SITE)


def _model_state(run_config: dict, seed: int) -> dict[str, torch.Tensor]:
    return build_model(model_spec(RunSettings.from_run_config(run_config)), seed=seed).state_dict()


def _evaluate(run_config: dict, state: dict, server_round: int = 1) -> Message:
    """The site is sent ``state`` as the round's global model (after training that round)."""
    arrays = ArrayRecord(state)
    config = ConfigRecord({wire.SERVER_ROUND: server_round})
    _send(run_config, MessageType.TRAIN, RecordDict({wire.ARRAYS: arrays, wire.CONFIG: config}))
    return _send(run_config, MessageType.EVALUATE, RecordDict({wire.ARRAYS: arrays, wire.CONFIG: config}))


def _compare(run_config: dict, champion: dict, challenger: dict) -> Message:
    run = run_config["run.output_dir"]
    spec = model_spec(RunSettings.from_run_config(run_config)).to_dict()
    candidates = {
        role: Candidate(encode_state_dict(state), run, spec, role, None)
        for role, state in (("champion", champion), ("challenger", challenger))
    }
    return _send(run_config, f"query.{wire.QUERY_COMPARE}", compare_content(candidates))


def _crafted(state: dict) -> dict:
    crafted = {k: v.clone() for k, v in state.items()}
    name = next(k for k, v in crafted.items() if v.is_floating_point() and v.numel() > 1)
    crafted[name].view(-1)[0] += 0.5
    return crafted


def test_site_compares_models_it_was_sent_with_aggregates_only(run_config):
    champion, challenger = _model_state(run_config, 1), _model_state(run_config, 2)
    assert not _evaluate(run_config, champion).has_error()
    assert not _evaluate(run_config, challenger, 2).has_error()  # one model per round

    reply = _compare(run_config, champion, challenger)

    assert not reply.has_error(), reply.error.reason
    content = reply.content
    assert not content.array_records and set(content.config_records) == {wire.SITE}
    metrics = dict(content[wire.METRICS])
    per_model = {
        wire.AUROC, wire.CALIBRATION_SLOPE, wire.CALIBRATION_INTERCEPT, wire.ECE,
        wire.SCORE_HIST_POS, wire.SCORE_HIST_NEG,
    }  # fmt: skip
    expected = {wire.N_TEST, wire.AUROC_DIFFERENCE, wire.DIFFERENCE_CI_LOW, wire.DIFFERENCE_CI_HIGH}
    expected |= {p + k for p in (wire.CHAMPION_PREFIX, wire.CHALLENGER_PREFIX) for k in per_model}
    assert set(metrics) == expected
    lists = {k: v for k, v in metrics.items() if isinstance(v, list)}
    assert len(lists) == 4 and all(len(v) == HIST_BINS for v in lists.values())
    assert all(isinstance(v, (int, float)) for k, v in metrics.items() if k not in lists)
    difference = metrics[wire.CHALLENGER_PREFIX + wire.AUROC] - metrics[wire.CHAMPION_PREFIX + wire.AUROC]
    assert metrics[wire.AUROC_DIFFERENCE] == pytest.approx(difference)
    low, high = metrics[wire.DIFFERENCE_CI_LOW], metrics[wire.DIFFERENCE_CI_HIGH]
    assert low <= metrics[wire.AUROC_DIFFERENCE] <= high


def test_crafted_model_is_refused_until_the_site_was_sent_it(run_config):
    champion = _model_state(run_config, 1)
    _evaluate(run_config, champion)
    crafted = _crafted(champion)

    refused = _compare(run_config, champion, crafted)
    _evaluate(run_config, crafted, 2)  # control: the same model, now sent as round 2's model
    answered = _compare(run_config, champion, crafted)

    assert refused.has_error() and refused.error.code == wire.EVALUATION_REFUSED
    assert refused.error.reason.startswith("evaluation refused: ") and "challenger" in refused.error.reason
    assert not any(ch.isdigit() for ch in refused.error.reason)  # the rule, no numbers
    assert not answered.has_error(), answered.error.reason


def test_a_model_of_another_run_is_refused(run_config):
    """Recorded under run R only: named as a model of another run, it is refused."""
    champion = _model_state(run_config, 1)
    _evaluate(run_config, champion)
    other = dict(run_config) | {"run.output_dir": run_config["run.output_dir"] + "-other"}

    reply = _compare(other, champion, champion)

    assert reply.has_error() and reply.error.code == wire.EVALUATION_REFUSED


def test_digest_is_the_same_for_an_array_record_and_its_state_dict():
    settings = RunSettings.from_run_config(flatten_config(compose_config([])))
    state = build_model(model_spec(settings), seed=3).state_dict()

    assert model_digest(ArrayRecord(state)) == model_digest(state)
    assert model_digest(ArrayRecord(state).to_torch_state_dict()) == model_digest(state)
    assert model_digest(_crafted(state)) != model_digest(state)


def test_paired_ci_brackets_the_difference_and_sees_a_better_challenger():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    champion = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 400), 0, 1)
    challenger = np.clip(champion + 0.05 * (y - 0.5) + rng.normal(0, 0.02, 400), 0, 1)

    difference, low, high = paired_auroc_difference(y, champion, challenger, seed=1)

    assert low <= difference <= high
    assert low > 0  # the challenger is better on the same rows, and the paired CI sees it


def test_recorded_models_are_not_compared_on_a_test_split_under_the_release_rule(run_config, monkeypatch):
    champion, challenger = _model_state(run_config, 1), _model_state(run_config, 2)
    _evaluate(run_config, champion)
    _evaluate(run_config, challenger, 2)
    monkeypatch.setenv("LHSFED_MIN_EVAL_ROWS", "100000")  # the site's rule, now above its test rows

    reply = _compare(run_config, champion, challenger)

    assert reply.has_error() and reply.error.code == wire.EVALUATION_REFUSED
    assert "too few test rows" in reply.error.reason
