"""Why docs/deployment.md's run stops early, and reliably: the noise-aware stopping rule on
releases as noisy as the walk-through's, made with the sites' own release code path
(histograms, Gaussian noise of the run's validation z, the metrics and standard errors the
sites compute, the server's pooling), many seeded runs of a model that does improve.

With ``early_stopping.improvement=clear`` and patience 1, a run of 4 planned rounds goes on
after round 2 only if round 2 is better than round 1 by more than 1.645 standard errors of
their difference (se ≈ 1.2 on the pooled loss here, against a true gain of a few hundredths),
and reaches round 4 only if round 3 is too: at most about 5 % each if the standard errors are
honest, so ≤ 0.3 % for both. ``tie`` (the default) hands out the last round and almost never
stops on such noise: what the walk-through would show without the key.
"""

from __future__ import annotations

import numpy as np

from federation.core.histogram_metrics import coarse_histograms, histogram_wire_metrics
from federation.core.privacy import VALIDATION, release_noises
from federation.core.records import Evaluation, RoundRecord
from federation.core.settings import EarlyStoppingSettings
from server.round_records import pooled_evaluation
from server.selection import should_stop

ROUNDS = 4  # the walk-through's planned rounds (tests/integration/test_deployment.py)
# cleveland and hungary: ~42 and ~41 validation rows (0.2 of the 70 % not tested), their share of positives
SITES = ((42, 0.46), (41, 0.36))
RUNS = 40


def _validation_z() -> float:
    """The walk-through's validation z: ε target 3, the sites' default release share 0.5,
    δ 1e-5, the test split once."""
    z = release_noises(
        epsilon=3.0 * 0.5, delta=1e-5, releases={VALIDATION: ROUNDS, "test": 1}, accountant="rdp"
    )
    return z[VALIDATION]


def _stopped_after(improvement: str, rng: np.random.Generator, z: float) -> int | None:
    """The round after which one simulated run stops (None: it ran all ROUNDS)."""
    labels = [(rng.random(n) < share).astype(int) for n, share in SITES]
    rules = EarlyStoppingSettings(patience=1, improvement=improvement)
    records = []
    for server_round in range(1, ROUNDS + 1):
        strength = 0.6 + 0.9 * (1 - np.exp(-server_round / 1.5))  # a model that improves each round
        replies = []
        for y in labels:
            risk = 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 1.2, len(y)))))
            noisy = coarse_histograms(y, risk) + rng.normal(0, z, (2, 20))
            replies.append(histogram_wire_metrics(noisy, n=len(y), noise_std=z, with_ci=False, rng=rng))
        pooled = pooled_evaluation(replies)
        records.append(
            RoundRecord(round=server_round, validation=Evaluation(pooled=pooled), aggregated=["a"])
        )
        if server_round < ROUNDS and should_stop(records, "loss", rules):
            return server_round
    return None


def test_the_walkthroughs_noise_stops_a_clear_improvement_run_early_and_never_a_tie_run():
    z = _validation_z()
    assert 7 < z < 9  # each bin's noise std: far above the ~2 patients a bin holds

    clear = [_stopped_after("clear", np.random.default_rng(seed), z) for seed in range(RUNS)]
    tie = [_stopped_after("tie", np.random.default_rng(seed), z) for seed in range(RUNS)]

    assert all(stop in (2, 3) for stop in clear) and clear.count(2) >= RUNS - 3
    assert tie.count(None) >= RUNS - 3
