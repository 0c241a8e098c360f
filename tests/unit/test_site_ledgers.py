"""Where simulated sites keep their ledgers (federation/coordinator/site_ledgers.py): the task's
shared folder by default, a run's own only when asked or when the run has no DP."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.site_policy import LEDGER_DIR_ENV
from federation.coordinator.site_ledgers import ledger_folder
from federation.core.errors import ConfigError


@pytest.fixture(autouse=True)
def no_explicit_folder(monkeypatch):
    monkeypatch.delenv(LEDGER_DIR_ENV, raising=False)


def test_campaigns_of_a_task_share_one_folder(tmp_path):
    fed = {"ledger_dir": str(tmp_path / "ledgers")}
    first, line = ledger_folder(fed, "uci_heart-num", tmp_path / "run1", sweep_dir=None, resumed=False)
    second, _ = ledger_folder(fed, "uci_heart-num", tmp_path / "run2", sweep_dir=None, resumed=False)
    other, _ = ledger_folder(fed, "other-task", tmp_path / "run3", sweep_dir=None, resumed=False)
    assert first == second == tmp_path / "ledgers" / "uci_heart-num" and line is None
    assert other != first


def test_fresh_ledgers_are_the_runs_own_and_the_console_says_so(tmp_path):
    folder, line = ledger_folder(
        {"fresh_ledgers": True}, "t", tmp_path / "run", sweep_dir=None, resumed=False
    )
    assert folder == (tmp_path / "run" / "ledgers") and "ε of earlier campaigns is not counted" in line


def test_a_run_without_dp_never_writes_to_the_shared_ledgers(tmp_path):
    """Its exact releases charge ε = ∞: in the shared folder they would refuse every later DP
    campaign of the task (seen: 'ε would reach inf > cap 10' at every site)."""
    fed = {"ledger_dir": str(tmp_path / "ledgers")}
    folder, line = ledger_folder(fed, "t", tmp_path / "run", sweep_dir=None, resumed=False, private=False)
    assert folder == tmp_path / "run" / "ledgers" and line.startswith("privacy=off:")


def test_fresh_ledgers_must_be_a_bool(tmp_path):
    with pytest.raises(ConfigError, match="federation.fresh_ledgers must be true or false"):
        ledger_folder({"fresh_ledgers": "yes"}, "t", Path(tmp_path), sweep_dir=None, resumed=False)
