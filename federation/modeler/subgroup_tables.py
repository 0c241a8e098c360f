"""The report's subgroup tables and headline (rendered like every other report table)."""

from __future__ import annotations

from typing import Any

from federation.modeler.report_format import Table, fmt

POOLED = "pooled"


def _ci(m: dict[str, Any], name: str) -> str:
    low, high = m.get(f"{name}_ci_low"), m.get(f"{name}_ci_high")
    value = fmt(m.get(name))
    return value if low is None or high is None else f"{value} [{fmt(low)}, {fmt(high)}]"


def _scopes(subgroups: dict[str, Any]):
    yield POOLED, subgroups.get(POOLED) or {}
    yield from (subgroups.get("sites") or {}).items()


def subgroup_table(evaluation: dict[str, Any]) -> Table | None:
    subgroups = evaluation.get("subgroups")
    if not subgroups:
        return None
    threshold = evaluation["threshold"]
    rows = [
        [
            f"{scope}: {feature} = {level}",
            fmt(m.get("n")),
            fmt(m.get("n_positive")),
            _ci(m, "auroc"),
            _ci(m, "citl"),
            _ci(m, "calibration_slope"),
            _ci(m, "tpr"),
            _ci(m, "fpr"),
        ]
        for scope, features in _scopes(subgroups)
        for feature, found in features.items()
        for level, m in found["levels"].items()
    ]
    return Table(
        "Subgroups: the global model per group of held-out test rows",
        ["group", "n", "positives", "AUROC [95% CI]", "cal. in the large [CI]", "cal. slope [CI]",
         f"TPR@{threshold:g}", f"FPR@{threshold:g}"],
        rows,
        "calibration in the large = mean predicted risk − observed rate; under DP every level is "
        "released as noisy histograms (n and positives noisy, CIs: ± 1.96 SD of resamples that "
        "include the noise); without DP a level with fewer than k rows of a class is not released "
        "(nor, with it, enough others that none comes back by subtraction), CIs: percentile "
        "bootstrap within each group",
    )  # fmt: skip


def gaps_table(evaluation: dict[str, Any]) -> Table | None:
    subgroups = evaluation.get("subgroups")
    if not subgroups:
        return None
    rows = [
        [f"{scope}: {feature}"] + [_ci(found["gaps"], g) for g in
         ("auroc_gap", "citl_gap", "slope_gap", "equalized_odds_difference")]
        for scope, features in _scopes(subgroups)
        for feature, found in features.items()
        if found["gaps"]
    ]  # fmt: skip
    return Table(
        "Subgroup gaps (highest − lowest level) with 95% CIs",
        ["feature", "AUROC gap", "cal.-in-the-large gap", "cal. slope gap", "equalized-odds difference"],
        rows,
        "a gap whose CI excludes 0 is a difference between groups beyond chance; pooled gaps of a "
        "deployment run combine the sites' CIs (normal approximation)",
    )


def headline_table(evaluation: dict[str, Any]) -> Table | None:
    head = evaluation.get("headline") or {}
    rows = []
    if head.get("worst_site_auroc"):
        rows.append(["worst site", head["worst_site_auroc"]["site"], fmt(head["worst_site_auroc"]["auroc"])])
    if head.get("worst_group_auroc"):
        group = head["worst_group_auroc"]
        rows.append(["worst group (pooled)", f"{group['feature']} = {group['level']}", fmt(group["auroc"])])
    if not rows:
        return None
    return Table("Headline: who is served least well", ["", "which", "AUROC"], rows)
