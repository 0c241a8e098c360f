"""Membership-inference scores and their metrics (pure numpy / scikit-learn).

Two attacks, both scoring "how member-like" a record looks to the global model:

- loss threshold (Yeom et al., 2018): members tend to have lower loss; score = −loss;
- offline LiRA (Carlini et al., 2022): compare the model's confidence on a record with the
  confidences of shadow models that did NOT train on it; score = how many standard
  deviations above that "out" distribution the target model sits.

An attack that cannot tell members from non-members has AUC 0.5 and TPR ≈ FPR.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

EPS = 1e-7
LOW_FPR = 0.01
BOOTSTRAP = 500


def loss_per_record(risk: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary cross-entropy of each record under predicted risk ``risk``."""
    p = np.clip(risk, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def logit_confidence(risk: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log(p_true / (1 − p_true)): the confidence LiRA models as Gaussian."""
    p_true = np.clip(np.where(y > 0.5, risk, 1 - risk), EPS, 1 - EPS)
    return np.log(p_true) - np.log1p(-p_true)


def lira_offline_scores(target: np.ndarray, shadow: np.ndarray, shadow_in: np.ndarray) -> np.ndarray:
    """z-score of the target's confidence against each record's out-of-training shadows.

    ``shadow`` and ``shadow_in`` are (shadows, records): confidences, and whether that shadow
    trained on that record. With few shadows the variance is pooled over records (the
    "fixed variance" variant), which is steadier than a per-record estimate.
    """
    out = np.where(shadow_in, np.nan, shadow)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a record no shadow left out
        mean = np.nanmean(out, axis=0)
    mean = np.nan_to_num(mean, nan=np.nanmean(out))
    spread = np.nanstd(out - mean) + EPS
    return (target - mean) / spread


def _auc(members: np.ndarray, non_members: np.ndarray) -> float:
    labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(labels, np.r_[members, non_members]))


def auc_interval(members: np.ndarray, non_members: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the attack AUC (members and non-members resampled apart).

    Small sites have few held-out records, so even a model that leaks nothing shows AUCs
    some way from 0.5; the interval says how far chance alone goes.
    """
    rng = np.random.default_rng(seed)
    aucs = [
        _auc(rng.choice(members, len(members)), rng.choice(non_members, len(non_members)))
        for _ in range(BOOTSTRAP)
    ]
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def attack_metrics(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict:
    """Attack AUC (with its 95% interval) and TPR at 1% FPR (higher score = member)."""
    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    fpr, tpr, _ = roc_curve(labels, np.r_[member_scores, nonmember_scores])
    return {
        "auc": _auc(member_scores, nonmember_scores),
        "auc_ci95": list(auc_interval(member_scores, nonmember_scores)),
        "tpr_at_1pct_fpr": float(tpr[fpr <= LOW_FPR].max()),
        "members": int(len(member_scores)),
        "non_members": int(len(nonmember_scores)),
    }
