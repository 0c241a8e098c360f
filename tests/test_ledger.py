"""The site privacy ledger, the site policy and the budget check (fast, no federation)."""

from __future__ import annotations

import math

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from hypothesis import given, settings as hsettings, strategies as st

from client.app import app as client_app
from client.ledger import SiteLedger, new_entry
from client.site_policy import SitePolicy, site_policy
from federation import keys
from federation.errors import ConfigError
from federation.flwr_app_config import default_run_config
from federation.privacy import epsilon_spent
from federation.settings import RunSettings
from server.federation_loop import model_spec
from federation.model import build_model
from tests.inprocess_grid import InProcessGrid
from tests.privacy_runs import rdp_epsilon


def _entry(run="r1", server_round=1, step=(1.1, 0.07, 14)):
    return new_entry(site="va", run=run, server_round=server_round, step=step, delta=1e-5,
                     epsilon_run=0.5, epsilon_total=0.7)


def test_ledger_survives_a_new_instance_and_only_appends(tmp_path):
    path = tmp_path / "site" / "va.sqlite"
    SiteLedger(path, site="va").record([_entry(), _entry(server_round=2)])
    SiteLedger(path, site="va").record([_entry(server_round=2)])  # the same round again

    reopened = SiteLedger(path, site="va")  # a restarted node

    assert [e.server_round for e in reopened.entries()] == [1, 2, 2]
    assert reopened.history("r1") == [(1.1, 0.07, 14)] * 3
    assert reopened.entries("other-run") == [] and reopened.last_total() == 0.7


def test_ledger_state_dict_round_trip_and_refuses_to_overwrite(tmp_path):
    source = SiteLedger(tmp_path / "a.sqlite", site="va")
    source.record([_entry(), _entry(run="r2", step=(2.0, 0.1, 5))])
    target = SiteLedger(tmp_path / "b.sqlite", site="va")

    target.load_state_dict(source.state_dict())

    assert target.entries() == source.entries()
    with pytest.raises(ConfigError, match="not empty"):
        target.load_state_dict(source.state_dict())


def test_unwritable_ledger_path_is_a_clear_error(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="ledger-path"):
        SiteLedger(tmp_path / "taken", site="va")


def test_policy_node_config_wins_over_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_MAX_EPSILON", "hungary=2.5,va=4")
    monkeypatch.setenv("LHSFED_DELTA", "1e-6")
    node = {"ledger-path": str(tmp_path / "l.sqlite"), "max-epsilon": 1.5}

    assert site_policy(node, "va", run_folder=tmp_path) == SitePolicy(tmp_path / "l.sqlite", 1.5, 1e-6)
    assert site_policy({}, "hungary", run_folder=tmp_path).max_epsilon == 2.5
    assert site_policy({}, "cleveland", run_folder=tmp_path) == SitePolicy(
        tmp_path / "ledgers" / "cleveland.sqlite", None, 1e-6)


def test_policy_reports_every_bad_value(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_DELTA", "va=2")
    with pytest.raises(ConfigError) as err:
        site_policy({"max-epsilon": "lots"}, "va", run_folder=tmp_path)
    assert "node config 'max-epsilon' must be a number" in str(err.value)
    assert "LHSFED_DELTA (site va) must be in (0, 1.0)" in str(err.value)


def test_non_private_training_has_no_finite_epsilon():
    assert epsilon_spent([(1.0, 0.1, 10), (0.0, 0.1, 10)], delta=1e-5) == math.inf


@hsettings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.floats(0.6, 4.0), st.floats(0.01, 0.3), st.integers(1, 60)),
                min_size=1, max_size=4))
def test_composition_over_entries_is_summed_rdp(history):
    """What the ledger composes equals Opacus's RDP curves summed entry by entry."""
    assert epsilon_spent(history, delta=1e-5) == pytest.approx(rdp_epsilon(history), rel=1e-9)


# --- the ClientApp with a node's ledger: a fresh Context every round, as after a restart ---

def _train_message(server_round: int, settings: RunSettings) -> Message:
    model = build_model(model_spec(settings), seed=settings.seed)
    content = RecordDict({keys.ARRAYS: ArrayRecord(model.state_dict()),
                          keys.CONFIG: ConfigRecord({keys.SERVER_ROUND: server_round})})
    return Message(content, dst_node_id=11, message_type="train")


def _train_round(node_config: dict, server_round: int, run_config: dict) -> Message:
    settings = RunSettings.from_run_config(run_config)
    with InProcessGrid(client_app, {11: node_config}, run_config) as grid:  # a new process
        return grid.send_and_receive([_train_message(server_round, settings)])[0]


@pytest.fixture()
def run_config(tmp_path):
    config = default_run_config()
    config.update({"run.output_dir": str(tmp_path / "run"), "rounds": 3})
    return config


def test_epsilon_is_composed_from_the_ledger_not_memory(tmp_path, run_config):
    node = {"partition-id": 3, "ledger-path": str(tmp_path / "va.sqlite")}
    replies = [_train_round(node, r, run_config) for r in (1, 2, 3)]
    ledger = SiteLedger(tmp_path / "va.sqlite", site="va")

    history = ledger.history()
    assert len(history) == 3 and not any(r.has_error() for r in replies)
    eps = [r.content[keys.METRICS][keys.EPSILON] for r in replies]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(rdp_epsilon(history), rel=1e-9)
    assert eps[-1] <= 3.0  # the run's target, over all its rounds
    assert replies[-1].content[keys.METRICS][keys.STEPS] == sum(n for _, _, n in history)


def test_a_capped_site_refuses_without_sending_arrays(tmp_path, run_config):
    node = {"partition-id": 3, "ledger-path": str(tmp_path / "va.sqlite")}
    first = _train_round(node, 1, run_config)
    spent = first.content[keys.METRICS][keys.SITE_EPSILON]
    cap = round(spent * 1.05, 3)  # hospital IT lowers the cap: one more round would pass it

    second = _train_round({**node, "max-epsilon": cap}, 2, run_config)

    assert second.has_error() and second.error.code == keys.BUDGET_REFUSED
    assert "site va refuses round 2: ε would reach" in second.error.reason
    assert f"> cap {cap:.4g} (spent {spent:.4g}" in second.error.reason
    assert len(SiteLedger(tmp_path / "va.sqlite", site="va").entries()) == 1  # nothing spent
