"""``lhsfed site ledger``: the site's ledger as its node reads it (verified), ε per run and the
lifetime ε; a tampered ledger is refused in one line (fast, no federation)."""

from __future__ import annotations

import sqlite3

from client.ledger import SiteLedger, new_entry
from client.node_identity import NodeIdentity
from federation.cli.main import main
from federation.security import pki


def _ledger(tmp_path) -> tuple[SiteLedger, list[str]]:
    pki.create_node_key("va", tmp_path)
    ledger = SiteLedger(
        tmp_path / "ledger.sqlite", identity=NodeIdentity.of_key(tmp_path / "va.key"), site="va"
    )
    rows = [
        ("run-a", 1, (1.1, 0.07, 14), 0.5, 0.5, ""),
        ("run-a", 1, (12.0, 1.0, 1), 0.6, 0.6, "validation histograms; L2 sensitivity 1.41; noise std 17"),
        ("run-b", 1, (1.2, 0.07, 14), 0.4, 0.9, ""),
    ]
    for run, server_round, step, eps_run, eps_total, release in rows:
        entry = new_entry(
            site="va",
            run=run,
            server_round=server_round,
            step=step,
            delta=1e-5,
            epsilon_run=eps_run,
            epsilon_total=eps_total,
            release=release,
        )
        ledger.reserve(lambda _existing, entry=entry: [entry])
    argv = ["site", "ledger", "--ledger", str(tmp_path / "ledger.sqlite"), "--key", str(tmp_path / "va.key")]
    return ledger, [*argv, "--site", "va"]


def test_lists_each_run_and_the_lifetime_epsilon_of_the_ledger(tmp_path, capsys):
    ledger, argv = _ledger(tmp_path)
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[1:3]] == [
        ["2", "14", "1", "0.600", "run-a"],
        ["1", "14", "0", "0.400", "run-b"],
    ]
    assert lines[-1] == "lifetime ε 0.900 at δ=1e-05: 3 rows, 2 runs, chain verified"
    assert ledger.last_total() == 0.9


def test_an_edited_ledger_is_refused_in_one_line(tmp_path, capsys):
    _, argv = _ledger(tmp_path)
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        conn.execute("UPDATE spend SET epsilon_total = 0.1 WHERE id = 3")
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("lhsfed site: error: ")
