"""A site's privacy ledger: every DP-SGD spend of every run, persisted in one SQLite file.

The ClientApp is rebuilt every round and a node may restart between rounds or runs, so no
memory is trusted: each round appends what its accountant saw — ``(noise multiplier, sample
rate, steps)`` — with the run's ε and the site's total ε after it. Rows are only ever added
(training twice spends twice). The ε maths stays in :mod:`federation.privacy`; this class
only stores and reads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from federation.errors import ConfigError
from federation.privacy import History

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    run TEXT NOT NULL,
    server_round INTEGER NOT NULL,
    noise_multiplier REAL NOT NULL,
    sample_rate REAL NOT NULL,
    steps INTEGER NOT NULL,
    delta REAL NOT NULL,
    epsilon_run REAL NOT NULL,
    epsilon_total REAL NOT NULL,
    recorded_at REAL NOT NULL
)
"""
_COLUMNS = ("site", "run", "server_round", "noise_multiplier", "sample_rate", "steps", "delta",
            "epsilon_run", "epsilon_total", "recorded_at")


@dataclass(frozen=True)
class LedgerEntry:
    """One accountant step group of one round: what was spent, and ε right after it."""

    site: str
    run: str
    server_round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon_run: float  # ε of this run so far, at the run's δ
    epsilon_total: float  # ε of every run of this site so far, at the site's δ
    recorded_at: float

    @property
    def accountant_step(self) -> tuple[float, float, int]:
        return (self.noise_multiplier, self.sample_rate, self.steps)


class SiteLedger:
    """Append-only record of a site's DP spending, with ``state_dict`` for export and tests."""

    def __init__(self, path: Path, *, site: str) -> None:
        self.path = Path(path)
        self.site = site
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"privacy ledger {self.path} cannot be opened ({err}); set the node "
                              f"config 'ledger-path' to a writable file") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error."""
        conn = sqlite3.connect(self.path, timeout=30.0)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def entries(self, run: str | None = None) -> list[LedgerEntry]:
        """Every entry of this site (or of one run), oldest first."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM spend WHERE site = ?"
        args: tuple = (self.site,)
        if run is not None:
            sql, args = sql + " AND run = ?", args + (run,)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [LedgerEntry(*row) for row in rows]

    def history(self, run: str | None = None) -> History:
        """The accountant history to compose: ``(σ, q, steps)`` per entry."""
        return [e.accountant_step for e in self.entries(run)]

    def record(self, entries: list[LedgerEntry]) -> None:
        """Append one round's entries atomically (all or none)."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._connect() as conn:
            conn.executemany(
                f"INSERT INTO spend ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                [tuple(asdict(e)[c] for c in _COLUMNS) for e in entries],
            )

    def last_total(self) -> float:
        """ε of every run so far as recorded (0 before the first spend)."""
        entries = self.entries()
        return entries[-1].epsilon_total if entries else 0.0

    def state_dict(self) -> dict:
        return {"site": self.site, "entries": [asdict(e) for e in self.entries()]}

    def load_state_dict(self, state: dict) -> None:
        """Restore into an empty ledger (e.g. moving a site to a new machine)."""
        if self.entries():
            raise ConfigError(f"privacy ledger {self.path} is not empty; load into a new file")
        self.record([LedgerEntry(**e) for e in state["entries"]])


def new_entry(*, site: str, run: str, server_round: int, step: tuple[float, float, int],
              delta: float, epsilon_run: float, epsilon_total: float) -> LedgerEntry:
    sigma, rate, steps = step
    return LedgerEntry(site=site, run=run, server_round=server_round, noise_multiplier=float(sigma),
                       sample_rate=float(rate), steps=int(steps), delta=float(delta),
                       epsilon_run=float(epsilon_run), epsilon_total=float(epsilon_total),
                       recorded_at=time.time())
