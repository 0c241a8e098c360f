"""What a site sends back when asked to personalize: scalar test metrics of two models, never
arrays, rows or the personalized weights; and what it refuses (issue N.4)."""

from __future__ import annotations

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from client.personalize import load_personalized, personalized_path
from client.site_policy import simulated_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec
from tests.helpers.simulated_site import send_to_site

QUERY = f"{MessageType.QUERY}.{wire.QUERY_PERSONALIZE}"
# Switzerland (index 2) is small and fast; its validation part is too small to recalibrate on.
SITES = {"finetune": (2, "switzerland"), "recalibrate": (0, "cleveland")}


def _config(*overrides: str) -> dict:
    return flatten_config(compose_config(["rounds=1", "personalize_steps=3", *overrides]))


pytestmark = pytest.mark.usefixtures("as_the_server_process")  # tests/unit/conftest.py


def _ask(run_config: dict, message_type: str, site_index: int = 2) -> Message:
    settings = RunSettings.from_run_config(run_config)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1})})
    return send_to_site(run_config, message_type, content, partition=site_index)


def _expected_keys(finetune: bool) -> set[str]:
    # under DP a Platt-recalibrated model's scores are not released (its fit is exact on the
    # validation rows): only the global model's; fine-tuning's model is a DP-SGD output
    prefixes = (wire.GLOBAL_PREFIX, wire.PERSONALIZED_PREFIX) if finetune else (wire.GLOBAL_PREFIX,)
    keys = {wire.N_TEST} | {prefix + key for prefix in prefixes for key in wire.PERSONALIZE_METRICS}
    # the metrics are one DP release: its noise, its own ε and the ledger's ε right after it
    keys |= {wire.RELEASE_NOISE_STD, wire.RELEASE_EPSILON, wire.EPSILON, wire.SITE_EPSILON}
    spend = {wire.STEPS, wire.EPSILON, wire.SITE_EPSILON, wire.NOISE_MULTIPLIER}
    return keys | (spend if finetune else set())


@pytest.mark.parametrize("mode", ["finetune", "recalibrate"])
def test_personalize_reply_holds_only_the_listed_scalar_aggregates(mode, tmp_path):
    config, (index, site) = _config(f"personalize={mode}"), SITES[mode]
    assert not _ask(config, MessageType.TRAIN, index).has_error()
    assert not _ask(config, MessageType.EVALUATE, index).has_error()  # round 1's model, recorded

    reply = _ask(config, QUERY, index)

    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    content = reply.content
    assert not content.array_records  # the personalized weights never leave the site
    metrics = dict(content[wire.METRICS])
    assert set(metrics) == _expected_keys(mode == "finetune")
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()), metrics
    assert set(content.config_records) == {wire.SITE}
    # ... it is kept at the site, beside the site's ledger, for lhsfed predict there.
    run = RunSettings.from_run_config(config)
    kept = personalized_path(simulated_policy(site, run_folder=tmp_path), f"flwr-run-{1}")
    assert (load_personalized(kept, run).platt is not None) == (mode == "recalibrate")
    # a replayed request would fine-tune (and spend) again, or overwrite the kept model
    again = _ask(config, QUERY, index)
    assert again.has_error() and again.error.code == wire.EVALUATION_REFUSED
    assert "once per run" in again.error.reason


def test_a_site_refuses_to_personalize_a_run_it_did_not_train_in():
    reply = _ask(_config("personalize=finetune"), QUERY)

    assert reply.has_error()
    assert reply.error.code == wire.EVALUATION_REFUSED


def test_a_site_refuses_personalization_the_run_config_did_not_plan():
    config = _config()  # personalize=none: its noise was not planned for fine-tuning steps

    reply = _ask(config, QUERY)

    assert reply.has_error() and reply.error.code == wire.RUN_CONFIG_REFUSED
