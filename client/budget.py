"""The site's DP budget for this run: its ledger (the truth) and its cap (the site's rule).

Before training, :meth:`SiteBudget.refusal` composes everything the ledger holds with the
round about to be taken; if that would pass the site's ``max-epsilon`` the site refuses and
sends nothing. After training, :meth:`SiteBudget.record` appends what Opacus's accountant
saw. ε for the run (what the coordinator's target bounds) and ε for the site (every run it
ever joined) are both composed from the ledger, never from memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context

from client.ledger import LedgerEntry, SiteLedger, new_entry
from client.site_policy import SitePolicy, site_policy
from federation.privacy import History, epsilon_spent
from federation.settings import RunSettings

log = logging.getLogger(__name__)


def run_identity(settings: RunSettings, context: Context) -> str:
    """Stable name of the run: its folder (kept by a resumed run), else Flower's run id."""
    return settings.output_dir or f"flwr-run-{context.run_id}"


def run_folder(settings: RunSettings, context: Context) -> Path:
    """Where the coordinator's run folder is (simulation default for the ledgers)."""
    return Path(settings.output_dir or Path("outputs") / "flwr" / str(context.run_id))


@dataclass(frozen=True)
class SiteBudget:
    """A site's ledger and policy, as seen from one run."""

    site: str
    run: str
    ledger: SiteLedger
    policy: SitePolicy
    run_delta: float
    accountant: str = "rdp"

    @classmethod
    def open(cls, context: Context, settings: RunSettings, site: str) -> "SiteBudget":
        policy = site_policy(dict(context.node_config), site, run_folder=run_folder(settings, context))
        return cls(site=site, run=run_identity(settings, context),
                   ledger=SiteLedger(policy.ledger_path, site=site), policy=policy,
                   run_delta=settings.privacy.delta, accountant=settings.privacy.accountant)

    @property
    def site_delta(self) -> float:
        return self.policy.delta if self.policy.delta is not None else self.run_delta

    def site_epsilon(self, extra: History = ()) -> float:
        """ε of every run of this site (plus ``extra`` steps), at the site's δ."""
        return epsilon_spent(self.ledger.history() + list(extra), delta=self.site_delta,
                             accountant=self.accountant)

    def run_epsilon(self, extra: History = ()) -> float:
        """ε of this run so far (plus ``extra`` steps), at the run's δ."""
        return epsilon_spent(self.ledger.history(self.run) + list(extra), delta=self.run_delta,
                             accountant=self.accountant)

    def refusal(self, planned: History, server_round: int) -> str | None:
        """Why this site will not train the planned round, or None if its cap allows it."""
        cap = self.policy.max_epsilon
        if cap is None:
            return None
        spent, would = self.site_epsilon(), self.site_epsilon(planned)
        if would <= cap:
            return None
        reason = (f"site {self.site} refuses round {server_round}: ε would reach {would:.4g} > "
                  f"cap {cap:.4g} (spent {spent:.4g}, δ={self.site_delta:g})")
        log.warning("%s", reason)
        return reason

    def record(self, steps: History, server_round: int) -> LedgerEntry | None:
        """Append one round's accountant steps; returns the last entry written."""
        entries, so_far = [], []
        for step in steps:
            so_far.append(step)
            entries.append(new_entry(
                site=self.site, run=self.run, server_round=server_round, step=step,
                delta=self.run_delta, epsilon_run=self.run_epsilon(so_far),
                epsilon_total=self.site_epsilon(so_far)))
        self.ledger.record(entries)
        return entries[-1] if entries else None
