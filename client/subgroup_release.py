"""Subgroup evaluation under DP (issue P): one Gaussian release of every subgroup level's class
score histograms on the test split, charged to the site's ledger before it leaves.

Why one release of sensitivity √A: each of the spec's A subgroup features splits the test rows
into its levels (the spec's levels or bands: fixed by the spec, never by the data), and a row
is in at most one level of a feature (missing, or a value outside the levels: in none;
:func:`level_index` refuses a row in two, so the bound is the code's, not an assumption). A
patient added or removed changes one coarse bin of one level's histogram by 1 per feature: an
L2 change of at most √A for all features released together, the noise std is z·√A.

Every level of the spec is released, whatever its size. The k rule of exact releases
(``client.subgroups``: levels under k rows hidden, with enough others that none comes back by
subtraction) chose what to send from exact counts, an outcome no noise covers, so it is not
applied here; the noise protects a level of any size, and its intervals say how little a
small one tells. The release is a kind of the run's plan (``federation.core.privacy.SUBGROUPS``,
once per run, with the test release of the round handed out); the coordinator computes every
figure from it (``federation.core.subgroup_histograms``).
"""

from __future__ import annotations

import math

import numpy as np

from client.dp_release import gaussian_release
from client.release_replies import release_epsilon
from federation.core import wire
from federation.core.dataspec import DatasetSpec
from federation.core.histogram_metrics import coarse_histograms, spread
from federation.core.privacy import SUBGROUPS
from federation.core.subgroups import subgroup_masks


def level_index(x: np.ndarray, spec: DatasetSpec) -> dict[str, tuple[list[str], np.ndarray]]:
    """feature -> (its levels in the spec's order, each row's level index or -1 for none)."""
    out = {}
    for feature, masks in subgroup_masks(x, spec).items():
        stacked = np.array(list(masks.values()), dtype=bool).reshape(len(masks), len(x))
        if (stacked.sum(axis=0) > 1).any():  # would break the release's sensitivity bound
            raise RuntimeError(f"subgroup feature {feature!r} puts a row in two levels")
        out[feature] = (list(masks), np.where(stacked.any(axis=0), stacked.argmax(axis=0), -1))
    return out


def subgroup_cells(x, y, risk, spec: DatasetSpec) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Each level's (feature, level) and its exact coarse class histograms (levels × 2 × bins)."""
    y, risk = np.asarray(y).astype(int), np.asarray(risk, dtype=float)
    names, hists = [], []
    for feature, (levels, index) in level_index(x, spec).items():
        for i, level in enumerate(levels):
            names.append((feature, level))
            hists.append(coarse_histograms(y[index == i], risk[index == i]))
    return names, np.stack(hists)


def sensitivity(spec: DatasetSpec) -> float:
    """L2 sensitivity of one release of every subgroup feature's levels: √(features)."""
    return math.sqrt(len(spec.subgroup_features))


def subgroup_release(budget, settings, spec: DatasetSpec, x, y, risk, *, server_round: int) -> dict:
    """Charge the run's one subgroup release, then return its reply keys: every level's noisy
    histograms (wire bins), the noise std per coarse bin, the release's ε and the ledger's ε
    right after it. Raises PrivacyBudgetError (nothing released) if the ledger refuses."""
    noise = budget.run_noise(settings)
    names, hists = subgroup_cells(x, y, risk, spec)
    z = noise.release_z[SUBGROUPS]
    charged = gaussian_release(
        budget,
        settings,
        hists,
        sensitivity=sensitivity(spec),
        z=z,
        server_round=server_round,
        what=f"{SUBGROUPS} of the test split of round {server_round}'s model: class score histograms "
        f"of {len(names)} levels of {len(spec.subgroup_features)} feature(s)",
        in_run_plan=True,
        limit=noise.releases[SUBGROUPS],
    )
    released = {
        wire.SUBGROUP_NOISE_STD: charged.noise_std,
        wire.SUBGROUP_RELEASE_EPSILON: release_epsilon(budget, z),
        wire.EPSILON: charged.epsilon_run,
        wire.SITE_EPSILON: charged.epsilon_total,
    }
    for (feature, level), (pos, neg) in zip(names, charged.values):
        prefix = f"{wire.SUBGROUP_PREFIX}{feature}={level}/"
        released |= {prefix + "score-hist-pos": spread(pos), prefix + "score-hist-neg": spread(neg)}
    charged.covers(released)
    return released
