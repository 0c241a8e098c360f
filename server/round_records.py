"""Turn one round's replies into the parts of its :class:`RoundRecord` (pure)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Message

from client.subgroups import from_wire
from federation.core import wire
from federation.core.histogram_metrics import pooled_auroc_estimable, pooled_auroc_uncertainty
from federation.core.metrics import SITE_WIRE_KEYS, pooled_from_histograms
from federation.core.records import Evaluation
from federation.core.subgroup_histograms import from_site_record, released_subgroups

TRAIN_FIELDS = {
    "loss": wire.TRAIN_LOSS,
    "num_examples": wire.NUM_EXAMPLES,
    "epsilon": wire.EPSILON,
    "steps": wire.STEPS,
    "noise_multiplier": wire.NOISE_MULTIPLIER,
    "sample_rate": wire.SAMPLE_RATE,
    "site_epsilon": wire.SITE_EPSILON,
    "delta": wire.DELTA,
    "charged_rounds": wire.CHARGED_ROUNDS,
}
EVAL_FIELDS = {
    "auroc": wire.AUROC,
    "auprc": wire.AUPRC,
    "brier": wire.BRIER,
    "loss": wire.EVAL_LOSS,
    "n_test": wire.N_TEST,
    "n_positive": wire.N_POSITIVE,
    "loss_se": wire.EVAL_LOSS_SE,
    "auroc_se": wire.AUROC_SE,
    "release_noise_std": wire.RELEASE_NOISE_STD,
    "epsilon": wire.EPSILON,  # DP releases: the site's ledger right after the release
    "site_epsilon": wire.SITE_EPSILON,
    **SITE_WIRE_KEYS,
}


HIST_FIELDS = {"score_hist_pos": wire.SCORE_HIST_POS, "score_hist_neg": wire.SCORE_HIST_NEG}


def site_of(reply: Message) -> str:
    return str(reply.content[wire.SITE][wire.SITE_NAME])


def _pick(reply: Message, fields: dict[str, str]) -> dict[str, float]:
    metrics = reply.content[wire.METRICS]
    return {name: metrics[key] for name, key in fields.items() if key in metrics}


def train_by_site(replies: Iterable[Message]) -> dict[str, dict[str, float]]:
    return {site_of(r): _pick(r, TRAIN_FIELDS) for r in replies if not r.has_error()}


def sites_by_node(replies: Iterable[Message]) -> dict[int, str]:
    """Flower node id -> site name, from the replies that named their site."""
    return {
        int(r.metadata.src_node_id): site_of(r)
        for r in replies
        if not r.has_error() and wire.SITE in r.content
    }


def failures(
    replies: Iterable[Message],
    *,
    stage: str = "train",
    nodes_by_message: dict[str, int] | None = None,
    sites: dict[int, str] | None = None,
) -> list[dict[str, object]]:
    """Replies that carried an error instead of content: stage, node, site and reason.

    An error the SuperLink wrote for a dead node comes from the SuperLink itself (node 1):
    the node is the one the answered message was sent to (``nodes_by_message``). Error
    replies carry no site name; ``sites`` (learnt from earlier replies) supplies it.
    """
    nodes_by_message, sites = nodes_by_message or {}, sites or {}
    found = []
    for r in (r for r in replies if r.has_error()):
        node = nodes_by_message.get(r.metadata.reply_to_message_id, int(r.metadata.src_node_id))
        found.append(
            {
                "stage": stage,
                "node": int(node),
                "site": sites.get(int(node)),
                "code": int(r.error.code),
                "reason": r.error.reason,
            }
        )
    return found


def unanswered(
    nodes: Iterable[int], *, stage: str, timeout: float, sites: dict[int, str] | None = None
) -> list[dict[str, object]]:
    """Failures for the nodes that sent nothing back within the round's timeout."""
    sites = sites or {}
    return [
        {
            "stage": stage,
            "node": int(n),
            "site": sites.get(int(n)),
            "code": None,
            "reason": f"no reply within strategy.round_timeout ({timeout:g}s)",
        }
        for n in sorted(nodes)
    ]


def _unprefixed(reply: Message, prefix: str) -> dict:
    """The reply's metrics whose key starts with ``prefix``, under the plain wire keys."""
    metrics = reply.content[wire.METRICS]
    return {k[len(prefix) :]: metrics[k] for k in metrics.keys() if k.startswith(prefix)}


def _finite_average(values: list, weights: np.ndarray) -> float:
    """Weighted mean over the sites whose value is a number (a DP release's ratio can be NaN)."""
    values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    keep = np.isfinite(values)
    return float(np.average(values[keep], weights=weights[keep])) if keep.any() else float("nan")


def pooled_evaluation(metrics: list[dict]) -> dict[str, float]:
    """Pooled metrics: AUROC/AUPRC from summed histograms, the rest weighted by n_test."""
    if not metrics:
        return {}
    pos = np.sum([m[wire.SCORE_HIST_POS] for m in metrics], axis=0)
    neg = np.sum([m[wire.SCORE_HIST_NEG] for m in metrics], axis=0)
    n = np.array([m[wire.N_TEST] for m in metrics], dtype=float)
    pooled = pooled_from_histograms(pos, neg)
    pooled["brier"] = _finite_average([m[wire.BRIER] for m in metrics], n)
    pooled["loss"] = _finite_average([m[wire.EVAL_LOSS] for m in metrics], n)
    pooled["n_test"] = int(n.sum())
    if all(wire.EVAL_LOSS_SE in m for m in metrics):  # DP releases: a weighted mean's error
        errors = np.array([m[wire.EVAL_LOSS_SE] for m in metrics], dtype=float)
        pooled["loss_se"] = float(np.sqrt(np.sum((n / n.sum() * errors) ** 2)))
    noise = [m.get(wire.RELEASE_NOISE_STD) for m in metrics]
    if all(std is not None and std > 0 for std in noise):  # DP releases: the sum's own error
        if not pooled_auroc_estimable(pos, neg, noise, rows=int(n.sum())):
            pooled |= {"auroc": float("nan"), "auprc": float("nan"), "auroc_undefined": "noise"}
        elif np.isfinite(pooled["auroc"]):
            se, interval = pooled_auroc_uncertainty(pos, neg, noise)
            pooled |= {"auroc_se": se, "auroc_ci": list(interval)}
    return pooled


def evaluation_record(replies: Iterable[Message], prefix: str = "") -> Evaluation:
    """The sites' and pooled metrics of the test split, or (``prefix`` ``val-``) of the
    validation split; a site that released nothing for that split is left out."""
    ok = sorted((r for r in replies if not r.has_error()), key=site_of)  # sums in a fixed order
    by_site = {site_of(r): _unprefixed(r, prefix) | _release_noise(r, prefix) for r in ok}
    by_site = {site: m for site, m in by_site.items() if wire.N_TEST in m}
    return Evaluation(
        sites={site: _site_entry(m) for site, m in by_site.items()},
        pooled=pooled_evaluation(list(by_site.values())),
    )


def _release_noise(reply: Message, prefix: str) -> dict:
    """A validation reply's noise std (its accounting keys carry no prefix): under the plain
    key, for the pooled figures' error; only where the reply holds no test release too."""
    metrics = reply.content[wire.METRICS]
    if not prefix or wire.N_TEST in metrics or wire.RELEASE_NOISE_STD not in metrics:
        return {}
    return {wire.RELEASE_NOISE_STD: metrics[wire.RELEASE_NOISE_STD]}


def _site_entry(metrics: dict) -> dict:
    """What metrics.jsonl keeps of one site's split: its metrics, class histograms (decision
    curves, quantile calibration) and, where the spec has them, its released subgroups (under
    DP only their levels' noisy histograms arrive: the figures are computed here from them)."""
    entry = {name: metrics[key] for name, key in EVAL_FIELDS.items() if key in metrics}
    entry |= {name: list(metrics[key]) for name, key in HIST_FIELDS.items() if key in metrics}
    subgroups = from_wire(metrics)
    if subgroups and wire.SUBGROUP_NOISE_STD in metrics:
        noise_std = float(metrics[wire.SUBGROUP_NOISE_STD])
        subgroups = released_subgroups(from_site_record(subgroups, noise_std))
    return entry | ({"subgroups": subgroups} if subgroups else {})
