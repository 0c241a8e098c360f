"""On real federations: the site ledger survives node restarts, and the site cap holds.

``eps1_runs`` (tests/conftest.py): two ε=1, 3-round runs of the four UCI sites, sharing the
sites' ledgers through ``LHSFED_LEDGER_DIR``; in process, so every site's ClientApp runs in
a new launcher process in the second run. In the second run one site is capped so that it
may take 4 of the 6 rounds.
"""

from __future__ import annotations

import numpy as np
import pytest

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.core.privacy import SUBGROUPS, TEST, VALIDATION, planned_releases
from federation.core.records import read_rounds
from federation.modeler.run_loader import load_settings
from tests.helpers.privacy_runs import rdp_epsilon, round_steps
from tests.helpers.runs import read_json

pytestmark = pytest.mark.slow
SITES = ("cleveland", "hungary", "switzerland", "va")


def _ledger(runs, site: str) -> SiteLedger:
    ledgers = runs.ledgers
    return SiteLedger(
        ledgers / f"{site}.sqlite", site=site, identity=NodeIdentity.of_key(ledgers / f"{site}.key")
    )


def _spent(runs, site: str) -> list[tuple[float, float, int]]:
    """Every round's (σ, q, steps) of both runs, from the server's metrics (not the ledger)."""
    return [step for run in (runs.first, runs.second) for step in round_steps(run, site).values()]


def _planned(run) -> list[str]:
    """The releases a run's plan charges, in ledger order: validation each round, then the
    subgroups' (where the spec marks them, as the embedded UCI spec does) and the test split's."""
    plan = planned_releases(load_settings(run))
    return [VALIDATION] * plan[VALIDATION] + [SUBGROUPS] * plan.get(SUBGROUPS, 0) + [TEST] * plan[TEST]


def test_ledger_total_is_the_composition_of_all_six_rounds(eps1_runs):
    for site in SITES:
        if site == eps1_runs.capped_site:
            continue
        ledger, spent = _ledger(eps1_runs, site), _spent(eps1_runs, site)
        assert len(spent) == 6
        # the DP-SGD rows are the steps the server saw; the releases are rows of their own
        np.testing.assert_allclose(ledger.training_history(), spent, rtol=1e-12)
        releases = [e for e in ledger.entries() if e.is_release]
        assert [e.release.split(" ")[0] for e in releases] == _planned(eps1_runs.first) + _planned(
            eps1_runs.second
        )
        assert {e.run for e in ledger.entries()} == {str(eps1_runs.first), str(eps1_runs.second)}
        total = rdp_epsilon(ledger.history())  # training and releases, recomputed with Opacus
        assert ledger.last_total() == pytest.approx(total, rel=1e-9) and total > rdp_epsilon(spent)
        summary = read_json(eps1_runs.second / "summary.json")["privacy"]["sites"][site]
        assert summary["site_epsilon"] == pytest.approx(total, rel=1e-9)
        # Each run alone stays within its target; the site's total is their composition.
        for run in (eps1_runs.first, eps1_runs.second):
            run_eps = read_json(run / "summary.json")["privacy"]["sites"][site]["epsilon"]
            assert run_eps <= 1.0 < total


def test_capped_site_stops_at_the_right_round_and_the_others_finish(eps1_runs):
    site, cap = eps1_runs.capped_site, eps1_runs.cap
    rounds = read_rounds(eps1_runs.second)

    trained = [r["round"] for r in rounds if site in r["train"]]
    refused = [
        r["round"]
        for r in rounds
        if any(f"site {site} refuses round {r['round']}" in f["reason"] for f in r["failures"])
    ]
    # the cap (tests/helpers/privacy_runs.py) fits the first run and round 1 of the second
    assert trained == [1] and refused == [2, 3]
    # The others trained and released their validation split every round; the capped site only
    # in the round it trained (a site that refused releases nothing that round).
    for record in rounds:
        assert set(record["train"]) | {site} == set(SITES)
        evaluated = set(SITES) if record["round"] in trained else set(SITES) - {site}
        assert set(record["validation"]["sites"]) == evaluated
    reason = next(f["reason"] for f in rounds[1]["failures"])
    assert f"cap {cap:.4g}" in reason and "spent" in reason
    log = (eps1_runs.second / "launcher.log").read_text()
    assert f"site {site} refuses round 2" in log and f"cap {cap:.4g}" in log
    ledger = _ledger(eps1_runs, site)
    assert len([e for e in ledger.entries() if not e.is_release]) == 4
    assert ledger.last_total() <= cap
    assert max(e.epsilon_total for e in ledger.entries()) <= cap
    assert read_json(eps1_runs.second / "summary.json")["rounds"] == 3
