"""Real runs and an independent ε computation shared by the privacy tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

from federation.core.records import read_rounds
from tests.helpers.runs import run_launcher

OVERRIDES = ("privacy.target_epsilon=1", "rounds=3")
# The two ledger runs need no Ray: the same ServerApp loop and ClientApp in each launcher's own
# (new) process, without ~15 s of runtime start per run. A site's ledger rows are the ClientApp's
# own accounting, whichever runtime runs it (test_ray_cluster checks the rows are the same).
LEDGER_RUNTIME = "federation.runtime=inprocess"
DELTA = 1e-5
CAPPED_SITE = "hungary"
CAPPED_AFTER = 4  # the capped site may take 4 of the 6 rounds of both runs


def rdp_epsilon(history: list[tuple[float, float, int]], delta: float = DELTA) -> float:
    """ε of (σ, q, steps) groups by summing their RDP curves (Opacus's analysis functions)."""
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp = np.sum(
        [compute_rdp(q=q, noise_multiplier=s, steps=n, orders=orders) for s, q, n in history], axis=0
    )
    return float(get_privacy_spent(orders=orders, rdp=rdp, delta=delta)[0])


def round_steps(run: Path, site: str) -> dict[int, tuple[float, float, int]]:
    """Round -> (σ, q, steps taken that round) as the run's metrics.jsonl reports them."""
    steps, before = {}, 0
    for record in read_rounds(run):
        metrics = record["train"].get(site)
        if metrics:
            steps[record["round"]] = (
                metrics["noise_multiplier"],
                metrics["sample_rate"],
                metrics["steps"] - before,
            )
            before = metrics["steps"]
    return steps


def _launch(tmp: Path, env: dict[str, str]) -> Path:
    tmp.mkdir()
    proc = run_launcher(tmp, *OVERRIDES, LEDGER_RUNTIME, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def site_ledger(ledgers: Path, site: str):
    from client.ledger import SiteLedger
    from client.node_identity import NodeIdentity

    return SiteLedger(
        ledgers / f"{site}.sqlite", site=site, identity=NodeIdentity.of_key(ledgers / f"{site}.key")
    )


def two_ledger_runs(tmp: Path) -> SimpleNamespace:
    """The second run's cap lets the capped site train and validate its 4th round of both runs
    and refuses its 5th: between the ledger after the first run plus (training, validation
    release) and that plus another training round (the steps the first run's rows hold)."""
    ledgers = tmp / "ledgers"
    env = {"LHSFED_LEDGER_DIR": str(ledgers)}
    first = _launch(tmp / "first", env)
    entries = site_ledger(ledgers, CAPPED_SITE).entries()
    spent = [e.accountant_step for e in entries]
    train = next(e.accountant_step for e in entries if not e.is_release)
    validation = next(e.accountant_step for e in entries if e.release.startswith("validation"))
    below, above = rdp_epsilon(spent + [train, validation]), rdp_epsilon(spent + [train, validation, train])
    assert CAPPED_AFTER == 4  # the first run's 3 rounds and one more
    cap = round((below + above) / 2, 4)
    second = _launch(tmp / "second", {**env, "LHSFED_MAX_EPSILON": f"{CAPPED_SITE}={cap}"})
    return SimpleNamespace(
        first=first, second=second, ledgers=ledgers, overrides=OVERRIDES, capped_site=CAPPED_SITE, cap=cap
    )
