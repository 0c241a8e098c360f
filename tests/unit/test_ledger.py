"""The site privacy ledger and the site policy (fast, no federation): a hash chain bound to the
node's key, reservations in one transaction, and the policy from node config or environment."""

from __future__ import annotations

import math
import sqlite3

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from client.ledger import SiteLedger, new_entry
from client.node_identity import LedgerError, NodeIdentity
from client.site_policy import SIMULATION_MAX_EPSILON, deployed_policy, simulated_policy
from federation.core.errors import ConfigError, PrivacyBudgetError
from federation.core.privacy import epsilon_spent
from federation.security import pki
from tests.helpers.privacy_runs import rdp_epsilon


def _entry(run="r1", server_round=1, step=(1.1, 0.07, 14)):
    return new_entry(
        site="va",
        run=run,
        server_round=server_round,
        step=step,
        delta=1e-5,
        epsilon_run=0.5,
        epsilon_total=0.7,
    )


def _identity(folder, site="va") -> NodeIdentity:
    key = folder / f"{site}.key"
    if not key.exists():
        pki.create_node_key(site, folder)
    return NodeIdentity.of_key(key)


def _ledger(folder, site="va", name="ledger.sqlite") -> SiteLedger:
    return SiteLedger(folder / name, identity=_identity(folder), site=site)


def _append(ledger: SiteLedger, *entries) -> None:
    ledger.reserve(lambda _existing: list(entries))


def test_ledger_survives_a_new_instance_and_only_appends(tmp_path):
    _append(_ledger(tmp_path), _entry(), _entry(server_round=2))
    _append(_ledger(tmp_path), _entry(server_round=2))  # the same round again

    reopened = _ledger(tmp_path)  # a restarted node

    assert [e.server_round for e in reopened.entries()] == [1, 2, 2]
    assert reopened.history("r1") == [(1.1, 0.07, 14)] * 3
    assert reopened.entries("other-run") == [] and reopened.last_total() == 0.7


def test_an_edited_row_breaks_the_chain_and_the_site_refuses(tmp_path):
    _append(_ledger(tmp_path), _entry(), _entry(server_round=2), _entry(server_round=3))
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:  # someone lowers a round's steps
        conn.execute("UPDATE spend SET steps = 1 WHERE server_round = 2")

    with pytest.raises(LedgerError, match="hash chain broken at entry 2") as err:
        _ledger(tmp_path)
    assert err.value.public == "ledger hash chain broken at entry 2"


def test_a_deleted_row_breaks_the_chain(tmp_path):
    _append(_ledger(tmp_path), _entry(), _entry(server_round=2), _entry(server_round=3))
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        conn.execute("DELETE FROM spend WHERE server_round = 2")
    with pytest.raises(LedgerError, match="chain broken at entry 2"):
        _ledger(tmp_path)


def test_a_deleted_or_older_ledger_is_refused_by_the_nodes_state(tmp_path):
    ledger = _ledger(tmp_path)
    _append(ledger, _entry())
    backup = (tmp_path / "ledger.sqlite").read_bytes()
    _append(ledger, _entry(server_round=2))

    (tmp_path / "ledger.sqlite").write_bytes(backup)  # an older copy put back
    with pytest.raises(LedgerError, match="does not hold the last entry"):
        _ledger(tmp_path)
    (tmp_path / "ledger.sqlite").unlink()  # or none at all: spending would restart from zero
    with pytest.raises(LedgerError, match="missing or empty") as err:
        _ledger(tmp_path)
    assert "2 entries" in err.value.public


def test_a_ledger_moved_to_a_new_path_keeps_working(tmp_path):
    _append(_ledger(tmp_path), _entry())
    (tmp_path / "ledger.sqlite").rename(tmp_path / "moved.sqlite")

    moved = _ledger(tmp_path, name="moved.sqlite")

    assert len(moved.entries()) == 1


def test_a_ledger_is_bound_to_its_node_key_and_site_name(tmp_path):
    _append(_ledger(tmp_path), _entry())
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(LedgerError, match="belongs to another node"):
        SiteLedger(tmp_path / "ledger.sqlite", identity=_identity(other), site="va")
    with pytest.raises(LedgerError, match="set site-name back to 'va'") as err:
        _ledger(tmp_path, site="va-renamed")
    assert "site renamed" in err.value.public


def test_a_refused_reservation_writes_nothing(tmp_path):
    ledger = _ledger(tmp_path)
    with pytest.raises(PrivacyBudgetError, match="no room"):
        ledger.reserve(lambda existing: "no room")
    assert ledger.entries() == []


def test_unwritable_ledger_path_is_a_clear_error(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="ledger-path"):
        SiteLedger(tmp_path / "taken", identity=_identity(tmp_path), site="va")


def test_deployed_policy_requires_the_sites_own_values(tmp_path):
    with pytest.raises(ConfigError) as err:
        deployed_policy({"data-path": "x.csv", "ledger-path": str(tmp_path / "l.sqlite")})
    for key in ("'max-epsilon'", "'spec-path'", "'node-key'"):
        assert key in str(err.value)


def test_simulated_policy_from_environment_with_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_MAX_EPSILON", "hungary=2.5,va=4")
    monkeypatch.setenv("LHSFED_DELTA", "1e-6")
    monkeypatch.setenv("LHSFED_REQUIRE_DP", "true")

    va = simulated_policy("va", run_folder=tmp_path)
    cleveland = simulated_policy("cleveland", run_folder=tmp_path)

    assert (va.max_epsilon, va.delta, va.require_dp) == (4.0, 1e-6, True)
    assert va.ledger_path == tmp_path / "ledgers" / "va.sqlite"
    assert cleveland.max_epsilon == SIMULATION_MAX_EPSILON and cleveland.min_cell_size == 2


def test_policy_reports_every_bad_value(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_DELTA", "va=2")
    monkeypatch.setenv("LHSFED_MAX_EPSILON", "lots")
    with pytest.raises(ConfigError) as err:
        simulated_policy("va", run_folder=tmp_path)
    assert "LHSFED_MAX_EPSILON (site va) must be a number" in str(err.value)
    assert "LHSFED_DELTA (site va) must be in (0, 1)" in str(err.value)


def test_non_private_training_has_no_finite_epsilon():
    assert epsilon_spent([(1.0, 0.1, 10), (0.0, 0.1, 10)], delta=1e-5) == math.inf


@hsettings(max_examples=10, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.6, 4.0), st.floats(0.01, 0.3), st.integers(1, 60)), min_size=1, max_size=4)
)
def test_composition_over_entries_is_summed_rdp(history):
    """What the ledger composes equals Opacus's RDP curves summed entry by entry."""
    assert epsilon_spent(history, delta=1e-5) == pytest.approx(rdp_epsilon(history), rel=1e-9)
