"""The test-only faulty ClientApp: its spec parser, its corruptions, and that the hospital's
ClientApp has no fault hook (the faults live only in the test app)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

import client.app
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.errors import ConfigError
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec
from tests.helpers.faulty_client import (
    APP_REFERENCE,
    FAULTS_ENV,
    Fault,
    corrupt,
    faulty_app,
    parse_faults,
)
from tests.helpers.faulty_client import app as faulty_module_app

RUN_CONFIG = flatten_config(compose_config(["privacy=off"]))


def test_parse_faults_reads_sites_kinds_and_rounds():
    faults = parse_faults("va:nan@1, hungary:raise,cleveland:signflip@12")
    assert faults == [
        Fault("va", "nan", 1),
        Fault("hungary", "raise", None),
        Fault("cleveland", "signflip", 12),
    ]
    assert faults[0].applies("va", 1) and not faults[0].applies("va", 2)
    assert faults[1].applies("hungary", 7)


def test_parse_faults_reports_every_bad_entry_at_once():
    with pytest.raises(ConfigError) as err:
        parse_faults("va:melt,hungary:nan@x,:nan")
    assert str(err.value).count("must be SITE:KIND[@ROUND]") == 3


def test_corruptions():
    sent = {"w": np.zeros((3, 2), "float32"), "b": np.ones(2, "float32")}
    trained = {"w": np.full((3, 2), 0.5, "float32"), "b": np.full(2, 2.0, "float32")}

    assert np.isnan(corrupt("nan", sent, trained)["w"]).all()
    assert corrupt("shape", sent, trained)["w"].shape == (2, 2)
    np.testing.assert_allclose(corrupt("scale", sent, trained)["b"], 1.0 + 1000.0)
    flipped = corrupt("signflip", sent, trained)
    np.testing.assert_allclose(flipped["w"], -0.5)
    np.testing.assert_allclose(flipped["b"], 0.0)
    assert all(v.dtype == np.float32 for v in flipped.values())


def _train(app, tmp_path) -> Message:
    """One real train message to site va (partition 3), through ``app``."""
    settings = RunSettings.from_run_config(RUN_CONFIG)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1})})
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 3, "lhsfed-mode": "simulation"},
        state=RecordDict(),
        run_config={**RUN_CONFIG, "run.output_dir": str(tmp_path)},
    )
    return app(Message(content, dst_node_id=7, message_type=MessageType.TRAIN), context)


@pytest.fixture
def _as_the_server_process(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


@pytest.mark.usefixtures("_as_the_server_process")
def test_the_hospital_app_ignores_the_fault_variable_and_the_test_app_applies_it(tmp_path, monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, "va:nan")  # the hospital's app must not read it
    hospital = _train(client.app.app, tmp_path / "hospital")
    faulty = _train(faulty_app(parse_faults("va:nan")), tmp_path / "faulty")

    assert "faults" not in Path(client.app.__file__).read_text()
    assert not any(np.isnan(a).any() for a in hospital.content[wire.ARRAYS].to_numpy_ndarrays())
    assert np.isnan(faulty.content[wire.ARRAYS].to_numpy_ndarrays()[0]).all()


@pytest.mark.usefixtures("_as_the_server_process")
def test_an_injected_crash_answers_as_a_site_error_with_no_text(tmp_path):
    reply = _train(faulty_app(parse_faults("va:raise")), tmp_path)

    assert reply.has_error()
    assert reply.error.reason == "site error (RuntimeError) (details in the site's log)"


def test_the_test_app_serves_every_message_type_the_hospital_app_does():
    # Flower keeps the registered handlers in a private dict: the one way to list them.
    assert set(faulty_app([])._registered_funcs) == set(client.app.app._registered_funcs)


def test_a_client_app_that_cannot_be_loaded_is_one_line_naming_the_key():
    from federation.coordinator.apps import load_app

    assert load_app(APP_REFERENCE) is faulty_module_app
    for reference in ("tests.helpers.no_such_module:app", "client.app:no_such_app", "client.app"):
        with pytest.raises(ConfigError) as err:
            load_app(reference)
        assert str(err.value).startswith(f"federation.client_app {reference!r} cannot be loaded")
        assert "\n" not in str(err.value)
