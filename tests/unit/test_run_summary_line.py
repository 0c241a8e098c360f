"""The coordinator's last console line is summary.json's own numbers (issue T, acceptance 2)."""

from __future__ import annotations

from server.progress import summary_line


def _summary(enabled: bool) -> dict:
    return {
        "rounds": 5,
        "selection": {"round": 4},
        "metrics": {"pooled": {"auroc": 0.80587, "auroc_ci": [0.6040, 1.0]} if enabled else {"auroc": 0.9}},
        "privacy": {
            "enabled": enabled,
            "sites": {"va": {"epsilon": 2.99998}, "cleveland": {"epsilon": 2.99993}} if enabled else {},
        },
    }


def test_the_last_line_states_the_round_handed_out_its_pooled_auroc_and_every_sites_epsilon_spent():
    assert summary_line(_summary(True)) == (
        "handed out: round 4 of 5; pooled test AUROC 0.806 [0.604, 1.000]; "
        "ε this run: cleveland 3.000, va 3.000"
    )
    assert (
        summary_line(_summary(False))
        == "handed out: round 4 of 5; pooled test AUROC 0.900; ε this run: ∞ (no DP)"
    )
