"""What a site remembers about the runs it joined, beside its ledger (never sent as such).

The learning loop asks a site about models and data of earlier runs: "compare these two
models" (it answers only for global models it was itself sent in a run it trained in, so a
coordinator cannot have it score a model built to probe its rows) and "has your data drifted
since the champion was trained" (against the site's own reference statistics of that run,
not ones the coordinator sends). Both are kept here, per site, keyed by the run's identity
(:func:`client.budget.run_identity`).

Where: a folder beside the site's ledger file (``<ledger stem>-state/``), so a hospital's
backup of its ledger folder keeps it, and a simulation's sites keep theirs with their
ledgers (``LHSFED_LEDGER_DIR``, else the run folder's ``ledgers/``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from client.site_policy import SitePolicy


def state_dir(policy: SitePolicy) -> Path:
    """This site's state folder (created by the writer that needs it)."""
    ledger = Path(policy.ledger_path)
    return ledger.with_name(f"{ledger.stem}-state")


def run_key(run_identity: str) -> str:
    """A file-name-safe key of a run identity (a folder path or ``flwr-run-N``)."""
    return hashlib.sha256(run_identity.encode()).hexdigest()[:32]
