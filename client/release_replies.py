"""The DP replies of a site's handlers (issue P): each is one Gaussian release charged to the
ledger (:func:`client.dp_release.gaussian_release`) and the metrics computed from it.

- :func:`split_release`: one split's class score histograms (evaluation: the validation split
  each round, the test split once per run); a patient adds 1 to one bin, L2 sensitivity 1.
- :func:`two_model_release`: two models' histograms on the test split (compare, personalize);
  a patient adds 1 to one bin of each, √2 (one model: 1).
- :func:`drift_release`: every referenced feature's cells now and in the reference
  (:mod:`client.drift_release`), √(2 · features).
- :func:`exact_release`: a run the site allows without DP: the exact reply, its row z = 0.

Every reply carries the release's noise std, its own ε and the ledger's ε right after it, so
ε shown is ε spent.
"""

from __future__ import annotations

import numpy as np

from client.dp_release import Charged, gaussian_release
from client.drift_reference import site_rows
from client.drift_release import dp_drift_scores, drift_cells, release_vector
from client.drift_release import sensitivity as drift_sensitivity
from client.site_randomness import SiteRandomness
from federation.core import wire
from federation.core.histogram_metrics import coarse_histograms, histogram_wire_metrics
from federation.core.privacy import TEST, VALIDATION, epsilon_spent, release_noise


def exact_release(budget, settings, server_round: int, what: str, released: dict) -> Charged:
    """Charge an exact release (a DP-off run the site allows: z = 0, no finite ε) covering
    ``released``."""
    charged = gaussian_release(
        budget,
        settings,
        np.zeros(0),
        sensitivity=1.0,
        z=0.0,
        server_round=server_round,
        what=what,
        in_run_plan=False,
    )
    charged.covers(released)
    return charged


def release_epsilon(budget, z: float) -> float:
    """ε of one release of noise multiplier ``z`` alone, at the site's δ and accountant."""
    return epsilon_spent([(z, 1.0, 1)], delta=budget.delta, accountant=budget.policy.accountant)


def query_noise(budget) -> float:
    """z of one query outside a run (compare, drift): the site's ``query-epsilon``."""
    policy = budget.policy
    return release_noise(
        epsilon=policy.query_epsilon, delta=budget.delta, releases=1, accountant=policy.accountant
    )


def _accounting(budget, charged: Charged, z: float) -> dict:
    return {
        wire.RELEASE_NOISE_STD: charged.noise_std,
        wire.RELEASE_EPSILON: release_epsilon(budget, z),
        wire.EPSILON: charged.epsilon_run,  # the ledger right after this release
        wire.SITE_EPSILON: charged.epsilon_total,
    }


def split_release(budget, settings, y, risk, *, kind: str, server_round: int, with_ci: bool) -> dict:
    """One split's release of the run's plan, ``kind`` validation (``val-`` keys) or test (once
    per run); validation is bounded by the run's target (a resumed run's redone round has a new
    model), the test release by the plan's count too."""
    noise = budget.run_noise(settings)
    charged = gaussian_release(
        budget,
        settings,
        coarse_histograms(y, risk),
        sensitivity=1.0,
        z=noise.release_z[kind],
        server_round=server_round,
        what=f"{kind} split of round {server_round}'s model: class score histograms",
        in_run_plan=True,
        limit=noise.releases[kind] if kind == TEST else None,
    )
    rng = np.random.default_rng(SiteRandomness().seed())
    metrics = histogram_wire_metrics(
        charged.values, n=len(y), noise_std=charged.noise_std, with_ci=with_ci and kind == TEST, rng=rng
    )
    prefix = wire.VALIDATION_PREFIX if kind == VALIDATION else ""
    released = {prefix + k: v for k, v in metrics.items() if not (prefix and k == wire.NUM_EXAMPLES)}
    released |= _accounting(budget, charged, noise.release_z[kind])
    charged.covers(released)
    return released


def two_model_release(
    budget,
    settings,
    y,
    risks: list,
    prefixes: list[str],
    *,
    z: float,
    server_round: int,
    what: str,
    in_run_plan: bool,
    limit: int | None = None,
) -> tuple[dict, Charged]:
    """The models' metrics on the test split under their prefixes, from one release (a patient
    adds 1 to one bin of each model's histograms: L2 sensitivity √(models))."""
    hists = np.stack([coarse_histograms(y, risk) for risk in risks])
    charged = gaussian_release(
        budget,
        settings,
        hists,
        sensitivity=float(np.sqrt(len(risks))),
        z=z,
        server_round=server_round,
        what=f"{what}: class score histograms of the test split, {hists.shape[-1]} bins each",
        in_run_plan=in_run_plan,
        limit=limit,
    )
    rng = np.random.default_rng(SiteRandomness().seed())
    out: dict = {wire.N_TEST: len(y), **_accounting(budget, charged, z)}
    for prefix, hist in zip(prefixes, charged.values):
        metrics = histogram_wire_metrics(hist, n=len(y), noise_std=charged.noise_std, rng=rng)
        out |= {prefix + k: v for k, v in metrics.items() if k not in (wire.N_TEST, wire.NUM_EXAMPLES)}
    charged.covers(out)
    return out, charged


def difference_interval(metrics: dict, first: str, second: str) -> tuple[float, float]:
    """Interval of AUROC(second) − AUROC(first): the two intervals' half-widths combined as if
    independent (post-processing of the release; conservative for positively correlated scores)."""
    half = [(metrics[p + wire.AUROC_CI_HIGH] - metrics[p + wire.AUROC_CI_LOW]) / 2 for p in (first, second)]
    centre = metrics[second + wire.AUROC] - metrics[first + wire.AUROC]
    width = float(np.hypot(*half))
    return centre - width, centre + width


def drift_release(budget, settings, data, spec, reference: dict) -> dict:
    """One release of every referenced feature's cells now and then at the site's query ε,
    charged to its cap; the scores are post-processing of it."""
    cells = drift_cells(site_rows(data), spec, reference)
    z = query_noise(budget)
    charged = gaussian_release(
        budget,
        settings,
        release_vector(cells),
        sensitivity=drift_sensitivity(cells),
        z=z,
        server_round=0,
        what=f"drift of {len(cells)} feature(s): their cells now and in the reference",
        in_run_plan=False,
    )
    accounting = _accounting(budget, charged, z)
    scores = dp_drift_scores(spec, cells, charged.values) | {
        k: accounting[k] for k in (wire.RELEASE_NOISE_STD, wire.RELEASE_EPSILON, wire.SITE_EPSILON)
    }
    charged.covers(scores)
    return scores
