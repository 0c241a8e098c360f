"""Fixtures of the unit tests that call the hospital's ClientApp directly."""

from __future__ import annotations

import pytest
from flwr.supercore.task_identity import TaskIdentity


@pytest.fixture()
def as_the_server_process(tmp_path, monkeypatch):
    """Messages built here are stamped as the ServerApp's (Flower's task identity), and the
    simulated site keeps its ledger and state under tmp_path."""
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None
