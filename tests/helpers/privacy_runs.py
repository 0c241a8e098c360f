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
    proc = run_launcher(tmp, *OVERRIDES, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def two_ledger_runs(tmp: Path) -> SimpleNamespace:
    ledgers = tmp / "ledgers"
    env = {"LHSFED_LEDGER_DIR": str(ledgers)}
    first = _launch(tmp / "first", env)
    one_round = list(round_steps(first, CAPPED_SITE).values())[0]
    below, above = (rdp_epsilon([one_round] * n) for n in (CAPPED_AFTER, CAPPED_AFTER + 1))
    cap = round((below + above) / 2, 4)
    second = _launch(tmp / "second", {**env, "LHSFED_MAX_EPSILON": f"{CAPPED_SITE}={cap}"})
    return SimpleNamespace(
        first=first, second=second, ledgers=ledgers, overrides=OVERRIDES, capped_site=CAPPED_SITE, cap=cap
    )
