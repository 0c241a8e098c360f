"""Every metric of a scored split from its two class histograms of predicted risk (pure).

Under DP a site releases only noisy per-class score histograms (``client.dp_release``); AUROC,
AUPRC, Brier, log loss, calibration, ECE, sensitivity and specificity are then post-processing
of that one release, free of further ε, and the same arithmetic serves the site (its reply) and
anyone holding the histograms. Scores are the bins' centres, so the metrics are of the binned
model (ties inside a bin count half); :data:`RELEASE_GROUPS` equal-width bins keep the noise per
bin small against the counts.

The AUROC interval and the standard errors come from a parametric bootstrap that includes the
DP noise: each resample draws Poisson counts around the released ones and adds fresh noise of
the released standard deviation, so they are wider than sampling-only ones by what the noise
costs.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression

from federation.core import wire
from federation.core.metrics import ECE_BINS, HIST_BINS

# Released bins under DP: 20 of width 0.05 (5 wire bins each). Fewer bins: less noise summed
# over a metric, more ties; measured in docs/privacy.md ('What each release costs').
RELEASE_GROUPS = 20
CI_RESAMPLES = 400
NORMAL_95 = 1.959964
_EPS = 1e-7


def bin_centres(groups: int) -> np.ndarray:
    """The released bins' centre risks, kept off 0 and 1 (their logits and log-losses stay finite)."""
    return np.clip((np.arange(groups) + 0.5) / groups, _EPS, 1 - _EPS)


def coarse_histograms(y: np.ndarray, p: np.ndarray, groups: int = RELEASE_GROUPS) -> np.ndarray:
    """Exact counts of positives (row 0) and negatives (row 1) per equal-width risk bin.

    A risk that is not a number in [0, 1] (a crafted model's NaN or ±inf) is put in a fixed
    place first: a failure on some rows only would answer "does a row lie there?" with an
    error instead of a charged release (review of issue P)."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.nan_to_num(np.asarray(p, dtype=float), nan=0.5, posinf=1.0, neginf=0.0), 0.0, 1.0)
    index = np.minimum((p * groups).astype(int), groups - 1)
    return np.stack(
        [np.bincount(index[y == 1], minlength=groups), np.bincount(index[y == 0], minlength=groups)]
    ).astype(float)


def spread(coarse: np.ndarray) -> list[float]:
    """A coarse histogram on the wire's HIST_BINS bins: each bin's count spread evenly over the
    wire bins it covers (the server pools wire histograms as it always has)."""
    coarse = np.asarray(coarse, dtype=float)
    width = HIST_BINS // len(coarse)
    return np.repeat(coarse / width, width).tolist()


def coarsen(wire_hist, groups: int = RELEASE_GROUPS) -> np.ndarray:
    """A wire histogram (HIST_BINS bins, :func:`spread` from a coarse one) back to its ``groups``
    coarse bins: each coarse count is the sum of the wire bins it was spread over."""
    return np.asarray(wire_hist, dtype=float).reshape(groups, -1).sum(axis=1)


def _auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC of histograms (last axis: bins in increasing risk; ties count half)."""
    below = np.cumsum(neg, axis=-1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=-1) / (pos.sum(axis=-1) * neg.sum(axis=-1))
    return np.where((pos.sum(axis=-1) > 0) & (neg.sum(axis=-1) > 0), np.clip(auc, 0.0, 1.0), np.nan)


def auroc_of(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC of one pair of class histograms (bins in increasing risk)."""
    return float(_auroc(np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)))


def auprc_of(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision of one pair of non-negative class histograms."""
    return _auprc(np.asarray(pos, dtype=float), np.asarray(neg, dtype=float))


def _auprc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision with bins as thresholds, from the highest risk down."""
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    if tp[-1] <= 0:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall_gain = np.diff(np.concatenate([[0.0], tp])) / tp[-1]
    return float(np.sum(precision * recall_gain))


def _calibration(pos: np.ndarray, neg: np.ndarray, centres: np.ndarray) -> tuple[float, float]:
    """Logistic recalibration on the bins' logits weighted by their counts: (slope, intercept)."""
    if pos.sum() <= 0 or neg.sum() <= 0:
        return float("nan"), float("nan")
    logit = np.log(centres / (1 - centres))
    x = np.concatenate([logit, logit])[:, None]
    labels = np.concatenate([np.ones_like(pos), np.zeros_like(neg)])
    weights = np.concatenate([pos, neg])
    keep = weights > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = LogisticRegression(penalty=None, max_iter=1000).fit(
            x[keep], labels[keep], sample_weight=weights[keep]
        )
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def _ece(pos: np.ndarray, neg: np.ndarray, centres: np.ndarray) -> float:
    """ECE over ECE_BINS equal-width bins (released bins merged into them)."""
    which = np.minimum((centres * ECE_BINS).astype(int), ECE_BINS - 1)
    count = np.bincount(which, weights=pos + neg, minlength=ECE_BINS)
    risk = np.bincount(which, weights=(pos + neg) * centres, minlength=ECE_BINS)
    events = np.bincount(which, weights=pos, minlength=ECE_BINS)
    total = count.sum()
    return float(np.abs(risk - events).sum() / total) if total > 0 else float("nan")


def parametric_resamples(
    pos, neg, *, noise_std: float, rng: np.random.Generator, resamples: int
) -> np.ndarray:
    """Parametric resamples (resamples, 2, bins): Poisson counts around the released ones
    (clipped at 0) plus fresh N(0, noise_std²) per bin, as a release would be."""
    draws = rng.poisson(np.maximum(np.stack([pos, neg]), 0), size=(resamples, 2, len(pos))).astype(float)
    if noise_std > 0:
        draws += rng.normal(0.0, noise_std, size=draws.shape)
    return draws


def _loss(pos: np.ndarray, neg: np.ndarray, centres: np.ndarray, n: float | None = None) -> np.ndarray:
    """Mean log loss of the binned scores: over ``n`` rows (the split's size) when given, else
    over the counts' own total."""
    with np.errstate(invalid="ignore", divide="ignore"):
        total = (pos + neg).sum(axis=-1) if n is None else n
        return (-pos * np.log(centres) - neg * np.log(1 - centres)).sum(axis=-1) / total


def auroc_interval(
    pos: np.ndarray,
    neg: np.ndarray,
    *,
    noise_std: float,
    rng: np.random.Generator,
    resamples: int = CI_RESAMPLES,
) -> tuple[float, float]:
    """95 % interval of AUROC: the estimate ± 1.96 standard deviations of the parametric
    resamples (DP noise included), within [0, 1]. Not their percentiles: a resample adds noise
    to already noisy counts, so its AUROC leans further to 0.5 than the estimate does."""
    draws = parametric_resamples(pos, neg, noise_std=noise_std, rng=rng, resamples=resamples)
    boot = _auroc(draws[:, 0], draws[:, 1])
    point = float(_auroc(pos, neg))
    if np.isnan(point) or np.isnan(boot).all():
        return float("nan"), float("nan")
    half = NORMAL_95 * float(np.nanstd(boot))
    return max(point - half, 0.0), min(point + half, 1.0)


# A pooled AUROC is reported only when the split is large against the noise of a class total
# (its public row count at least SPLIT_PER_NOISE of those standard deviations: a balanced split
# then has each class two deviations from 0) and both released class totals exceed one
# deviation. The first rule reads public numbers only, so whether a figure is shown never
# depends on which way the noise fell; the second catches a rare class the noise swamps. The
# four UCI sites' ~130 validation rows fail the first in every round (noise std 112 per class
# total); their 277 test rows at the default share pass it (36).
SPLIT_PER_NOISE = 4.0


def _grouped(hist: np.ndarray, groups: int) -> np.ndarray:
    return np.asarray(hist, dtype=float).reshape(groups, -1).sum(axis=1)


def pooled_noise_std(noise_stds: list[float]) -> float:
    """Noise std of one released bin of the sites' summed histograms (variances add)."""
    return float(np.sqrt(np.sum(np.square(noise_stds))))


def class_total_noise_std(noise_stds: list[float], *, groups: int = RELEASE_GROUPS) -> float:
    """Noise std of one class's total in the sites' summed histograms (``groups`` noisy bins)."""
    return pooled_noise_std(noise_stds) * float(np.sqrt(groups))


def split_outweighs_noise(rows: int, noise_stds: list[float], *, groups: int = RELEASE_GROUPS) -> bool:
    """The first rule above, on public numbers only: a ``rows``-row split's releases at these
    noise stds can say something of its AUROC (or of a difference of two)."""
    return rows >= SPLIT_PER_NOISE * class_total_noise_std(noise_stds, groups=groups)


def pooled_auroc_estimable(
    pos: np.ndarray, neg: np.ndarray, noise_stds: list[float], *, rows: int, groups: int = RELEASE_GROUPS
) -> bool:
    """Whether the sites' summed histograms of a ``rows``-row split (public) can say anything of
    the pooled AUROC: the two rules above."""
    if not split_outweighs_noise(rows, noise_stds, groups=groups):
        return False
    total_std = class_total_noise_std(noise_stds, groups=groups)
    return bool(min(_grouped(pos, groups).sum(), _grouped(neg, groups).sum()) >= total_std)


def pooled_auroc_uncertainty(
    pos: np.ndarray, neg: np.ndarray, noise_stds: list[float], *, groups: int = RELEASE_GROUPS
) -> tuple[float, tuple[float, float]]:
    """Standard error and 95 % interval of the pooled AUROC from the sites' summed wire
    histograms (DP noise included), resampled as a whole: the pooled AUROC is not a weighted
    mean of the sites' (it compares every site's positives with every site's negatives), so its
    error is not one of theirs either. The resampling is of public numbers: a fixed seed keeps
    the figures reproducible."""
    pos_groups, neg_groups = _grouped(pos, groups), _grouped(neg, groups)
    noise_std = pooled_noise_std(noise_stds)
    draws = parametric_resamples(
        pos_groups, neg_groups, noise_std=noise_std, rng=np.random.default_rng(0), resamples=CI_RESAMPLES
    )
    boot = _auroc(draws[:, 0], draws[:, 1])
    point = float(_auroc(pos_groups, neg_groups))
    if np.isnan(point) or np.isnan(boot).all():
        return float("nan"), (float("nan"), float("nan"))
    se = float(np.nanstd(boot))
    return se, (max(point - NORMAL_95 * se, 0.0), min(point + NORMAL_95 * se, 1.0))


def standard_errors(
    pos: np.ndarray,
    neg: np.ndarray,
    centres: np.ndarray,
    *,
    n: int,
    noise_std: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Standard errors of the loss and AUROC over the parametric resamples (DP noise included)."""
    draws = parametric_resamples(pos, neg, noise_std=noise_std, rng=rng, resamples=CI_RESAMPLES)
    loss, auc = _loss(draws[:, 0], draws[:, 1], centres, n), _auroc(draws[:, 0], draws[:, 1])
    return float(np.nanstd(loss)), float(np.nanstd(auc))


def histogram_wire_metrics(
    hist: np.ndarray,
    *,
    n: int,
    noise_std: float,
    threshold: float = 0.5,
    with_ci: bool = True,
    rng: np.random.Generator | None = None,
) -> dict:
    """The evaluate reply's metrics of one split from its (noisy) coarse histograms ``hist``
    (row 0 positives, row 1 negatives), under the wire keys. ``n``: the split's size (public:
    a function of the site's row count, as the training example count is).

    The noisy counts are used as released, negative ones included, wherever a metric is a sum
    or a ratio of sums of them (AUROC, counts, Brier, loss, rates, and the wire's histograms
    that the server sums): zero-mean noise then adds no bias, where clipping each bin at 0
    would pull AUROC towards 0.5 (measured: benchmarks/results/release_share.md). Fits that
    need weights (calibration, ECE, AUPRC) take the counts clipped at 0."""
    raw = np.asarray(hist, dtype=float)
    pos_raw, neg_raw = raw
    pos, neg = np.maximum(raw, 0)
    groups = len(pos)
    centres = bin_centres(groups)
    above = centres >= threshold
    slope, intercept = _calibration(pos, neg, centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        # per patient: over the split's public size n, not the noisy total of the counts
        brier = (pos_raw * (1 - centres) ** 2 + neg_raw * centres**2).sum() / n
        metrics = {
            wire.NUM_EXAMPLES: n,
            wire.N_TEST: n,
            wire.N_POSITIVE: float(pos_raw.sum()),
            wire.SCORE_HIST_POS: spread(pos_raw),
            wire.SCORE_HIST_NEG: spread(neg_raw),
            wire.AUROC: float(_auroc(pos_raw, neg_raw)),
            wire.AUPRC: _auprc(pos, neg),
            wire.BRIER: float(np.clip(brier, 0.0, 1.0)) if n > 0 else float("nan"),
            wire.EVAL_LOSS: float(max(_loss(pos_raw, neg_raw, centres, n), 0.0)) if n > 0 else float("nan"),
            wire.ECE: _ece(pos, neg, centres),
            wire.CALIBRATION_SLOPE: slope,
            wire.CALIBRATION_INTERCEPT: intercept,
            wire.THRESHOLD: float(threshold),
            wire.SENSITIVITY: _rate(pos_raw[above].sum(), pos_raw.sum()),
            wire.SPECIFICITY: _rate(neg_raw[~above].sum(), neg_raw.sum()),
        }
    rng = rng or np.random.default_rng()
    if noise_std > 0:
        loss_se, auroc_se = standard_errors(pos, neg, centres, n=n, noise_std=noise_std, rng=rng)
        metrics |= {wire.EVAL_LOSS_SE: loss_se, wire.AUROC_SE: auroc_se}
    if with_ci:
        low, high = auroc_interval(pos_raw, neg_raw, noise_std=noise_std, rng=rng)
        metrics |= {wire.AUROC_CI_LOW: low, wire.AUROC_CI_HIGH: high}
    return metrics


def _rate(part: float, whole: float) -> float:
    return float(np.clip(part / whole, 0.0, 1.0)) if whole > 0 else float("nan")
