"""Deployment unless the simulation launcher says otherwise: a node config without
``lhsfed-mode=simulation`` never gets the simulation defaults, and a deployed site's log never
goes under the folder the coordinator's run config names."""

from __future__ import annotations

import pytest
from flwr.app import Context, RecordDict

from client.site_errors import _log_file
from client.site_policy import MODE, SIMULATION, is_deployed, site_policy
from federation.coordinator.inprocess import partition_nodes
from federation.core import wire
from federation.core.errors import ConfigError
from tests.helpers.site_nodes import initial_arrays, message, run_config, send


def _context(node_config: dict, run_dir) -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config=node_config,
        state=RecordDict(),
        run_config={"run.output_dir": str(run_dir)},
    )


def test_only_a_node_the_launcher_marked_is_simulated(tmp_path):
    assert not any(is_deployed(config) for config in partition_nodes(4).values())
    assert is_deployed({"partition-id": 0}) and is_deployed({})
    # Flower's own simulation engine (``flwr run .``) gives exactly these two keys, and no more
    assert not is_deployed({"partition-id": 0, "num-partitions": 4})
    assert is_deployed({"partition-id": 0, "num-partitions": 4, "site-name": "cleveland"})
    with pytest.raises(ConfigError, match="lhsfed-mode"):
        is_deployed({MODE: "demo"})
    with pytest.raises(ConfigError, match="'max-epsilon'"):  # no simulation defaults for it
        site_policy({"partition-id": 0}, "cleveland", run_folder=tmp_path)


def test_an_unmarked_node_without_its_own_data_and_policy_refuses_every_message(tmp_path):
    config = run_config(tmp_path, "rounds=1")
    reply = send({"partition-id": 0}, config, message("train", initial_arrays(config)))[0]
    assert reply.has_error() and reply.error.code == wire.SITE_CONFIG_ERROR
    assert not (tmp_path / "run").exists()  # nothing written under the run config's folder


def test_a_deployed_sites_log_is_never_under_the_run_configs_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("LHSFED_LEDGER_DIR", raising=False)
    run_dir = tmp_path / "coordinator-run"
    ledger = tmp_path / "site" / "ledger.sqlite"

    assert _log_file(_context({"partition-id": 0}, run_dir)) is None  # the node's console only
    assert _log_file(_context({"ledger-path": str(ledger)}, run_dir)) == ledger.parent / "site.log"
    simulated = _context({"partition-id": 0, MODE: SIMULATION}, run_dir)
    assert _log_file(simulated) == run_dir / "ledgers" / "site.log"  # the launcher's own folder
