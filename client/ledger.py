"""A site's privacy ledger: every DP-SGD spend of every run, in one SQLite file that the
coordinator can neither reset nor rewrite.

- **Append-only and hash-chained**: each row stores the SHA-256 of the previous row and of
  itself; an edited, deleted or reordered row breaks the chain and the site refuses to train.
- **Bound to the node's identity** (its key, :mod:`client.node_identity`), not to the
  ``site-name`` its config gives: a ledger written by another key or under another name is
  refused, and the node's state file beside its key remembers the last row, so a deleted or
  replaced ledger is noticed too.
- **Reserve, then train**: :meth:`SiteLedger.reserve` checks the cap and writes the round's
  planned steps in one ``BEGIN IMMEDIATE`` transaction, so two concurrent train messages (or
  runs) cannot both pass the check. A reservation is never released: a round that failed
  after reserving counts as spent (conservative).
- **Every release in the same accountant** (issue P): a row with a non-empty ``release`` is a
  Gaussian mechanism on statistics of the site's rows (evaluation, feature statistics, compare,
  personalize): noise multiplier σ = noise std / L2 sensitivity, sample rate 1, one step, and
  ``release`` says what was released, its sensitivity and its noise. RDP and PRV compose it
  with DP-SGD's subsampled Gaussian steps as they compose those.

The ε maths stays in :mod:`federation.core.privacy`; this class stores, verifies and reads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from client.node_identity import LedgerError, NodeIdentity
from federation.core.errors import ConfigError, PrivacyBudgetError
from federation.core.privacy import History

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS spend (
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
        recorded_at REAL NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        release TEXT NOT NULL DEFAULT ''
    )""",
)
# A ledger written before releases were charged gains the column (its rows keep their hashes:
# an empty ``release`` is left out of a row's hash).
_MIGRATION = "ALTER TABLE spend ADD COLUMN release TEXT NOT NULL DEFAULT ''"
_COLUMNS = (
    "site",
    "run",
    "server_round",
    "noise_multiplier",
    "sample_rate",
    "steps",
    "delta",
    "epsilon_run",
    "epsilon_total",
    "recorded_at",
)


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
    epsilon_run: float  # ε of this run so far, at the site's δ
    epsilon_total: float  # ε of every run of this node so far, at the site's δ
    recorded_at: float
    release: str = ""  # "" : DP-SGD steps; else what a Gaussian release sent (client.dp_release)

    @property
    def accountant_step(self) -> tuple[float, float, int]:
        return (self.noise_multiplier, self.sample_rate, self.steps)

    @property
    def is_release(self) -> bool:
        return bool(self.release)


def _row_hash(prev_hash: str, entry: LedgerEntry) -> str:
    fields = [prev_hash, *(asdict(entry)[c] for c in _COLUMNS)]
    if entry.release:  # rows written before releases were charged keep their hashes
        fields.append(entry.release)
    body = json.dumps(fields, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class SiteLedger:
    """The verified ledger of one node; every read re-checks the chain from its first row."""

    def __init__(self, path: Path, *, identity: NodeIdentity, site: str) -> None:
        self.path, self.identity, self.site = Path(path), identity, site
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(spend)")}
                if "release" not in columns:
                    conn.execute(_MIGRATION)
                self._bind(conn)
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(
                f"privacy ledger {self.path} cannot be opened ({err}); set the node "
                f"config 'ledger-path' to a writable file"
            ) from None
        self.entries()  # verify now: a broken ledger refuses before anything else happens

    @contextmanager
    def _connect(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any error. ``immediate``
        takes SQLite's write lock at the start, so a read-check-write cannot interleave."""
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _bind(self, conn: sqlite3.Connection) -> None:
        """First use writes whose ledger this is; later uses must be that node and site."""
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("identity", self.identity.fingerprint), ("site", self.site)],
            )
            return
        if meta.get("identity") != self.identity.fingerprint:
            raise LedgerError(
                f"privacy ledger {self.path} belongs to another node (key "
                f"{meta.get('identity', '?')[:16]}…, this node's is "
                f"{self.identity.fingerprint[:16]}…); point 'ledger-path' at this "
                "node's own ledger",
                public="ledger belongs to another node",
            )
        if meta.get("site") != self.site:
            raise LedgerError(
                f"privacy ledger {self.path} is site {meta.get('site')!r}'s but the "
                f"node config says site-name {self.site!r}: the budget follows the node, "
                f"not its name; set site-name back to {meta.get('site')!r}",
                public="site renamed: this node's ledger was written under another site-name",
            )

    def _verified(self, conn: sqlite3.Connection) -> list[tuple[LedgerEntry, str]]:
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)}, prev_hash, hash, release FROM spend ORDER BY id")
        chain, head = [], self.identity.genesis
        for n, row in enumerate(rows.fetchall(), start=1):
            entry, prev_hash, digest = LedgerEntry(*row[:-3], release=row[-1]), row[-3], row[-2]
            if prev_hash != head or _row_hash(prev_hash, entry) != digest:
                raise LedgerError(
                    f"privacy ledger {self.path}: hash chain broken at entry {n} "
                    "(a row was edited, deleted or inserted); the site will not "
                    "train until the ledger is restored from its backup",
                    public=f"ledger hash chain broken at entry {n}",
                )
            chain.append((entry, digest))
            head = digest
        self.identity.check_state(self.path, [digest for _, digest in chain])
        return chain

    def entries(self, run: str | None = None) -> list[LedgerEntry]:
        """Every entry (or one run's), oldest first, after verifying the whole chain."""
        with self._connect() as conn:
            chain = self._verified(conn)
        return [e for e, _ in chain if run is None or e.run == run]

    def history(self, run: str | None = None) -> History:
        """The accountant history to compose: ``(σ, q, steps)`` per entry, releases included."""
        return [e.accountant_step for e in self.entries(run)]

    def training_history(self, run: str | None = None) -> History:
        """The DP-SGD steps only (what the site trained), without its releases."""
        return [e.accountant_step for e in self.entries(run) if not e.is_release]

    def reserve(self, plan: Callable[[list[LedgerEntry]], list[LedgerEntry] | str]) -> list[LedgerEntry]:
        """Atomically: verify, let ``plan`` see every entry and return the round's entries (or
        a refusal reason, raised as :class:`PrivacyBudgetError`), append them chained."""
        with self._connect(immediate=True) as conn:
            chain = self._verified(conn)
            planned = plan([e for e, _ in chain])
            if isinstance(planned, str):
                raise PrivacyBudgetError(planned)
            head = chain[-1][1] if chain else self.identity.genesis
            digests = [d for _, d in chain]
            for entry in planned:
                digest = _row_hash(head, entry)
                conn.execute(
                    f"INSERT INTO spend ({', '.join(_COLUMNS)}, prev_hash, hash, release) VALUES "
                    f"({', '.join('?' for _ in _COLUMNS)}, ?, ?, ?)",
                    (*(asdict(entry)[c] for c in _COLUMNS), head, digest, entry.release),
                )
                head = digest
                digests.append(digest)
        # After the commit: a state naming a row the ledger lacks would lock the site out.
        self.identity.record_state(self.path, digests)
        return planned

    def last_total(self) -> float:
        """ε of every run so far as recorded (0 before the first spend)."""
        entries = self.entries()
        return entries[-1].epsilon_total if entries else 0.0

    def state_dict(self) -> dict:
        return {
            "site": self.site,
            "identity": self.identity.fingerprint,
            "entries": [asdict(e) for e in self.entries()],
        }


def new_entry(
    *,
    site: str,
    run: str,
    server_round: int,
    step: tuple[float, float, int],
    delta: float,
    epsilon_run: float,
    epsilon_total: float,
    release: str = "",
) -> LedgerEntry:
    sigma, rate, steps = step
    return LedgerEntry(
        site=site,
        run=run,
        server_round=server_round,
        noise_multiplier=float(sigma),
        sample_rate=float(rate),
        steps=int(steps),
        delta=float(delta),
        epsilon_run=float(epsilon_run),
        epsilon_total=float(epsilon_total),
        recorded_at=time.time(),
        release=release,
    )


def open_site_ledger(policy, site: str, *, create_key: bool = False) -> SiteLedger:
    """The ledger a site's policy (:class:`client.site_policy.SitePolicy`) points at, opened
    as that node (its key and state); ``create_key``: a simulated site gets a key if none."""
    identity = NodeIdentity.of_key(
        policy.node_key, create=create_key, site=site, state_path=policy.node_state
    )
    return SiteLedger(policy.ledger_path, identity=identity, site=site)
