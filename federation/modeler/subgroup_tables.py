"""The report's subgroup tables and headline (rendered like every other report table)."""

from __future__ import annotations

from typing import Any

from federation.core.estimable import MIN_CLASS_ROWS
from federation.modeler.report_format import Table, fmt, measure_cell

POOLED = "pooled"


def _ci(m: dict[str, Any], name: str) -> str:
    """'value [low, high]', the too-few marker, or why the measure was withheld; never an
    interval without its point."""
    withheld = (m.get("withheld_measures") or {}).get(name)
    if withheld and m.get(name) is None:
        return withheld["text"]
    return measure_cell(m, name, missing_ci="")


def count(m: dict[str, Any], name: str) -> str:
    """A count as an integer; a DP release's noisy count as '≈326 (noisy)' (issue T.5: '326.000')."""
    value = m.get(name)
    if value is None:
        return fmt(None)
    if "noise_std" in m or isinstance(value, float) and not float(value).is_integer():
        return f"≈{round(value)} (noisy)"
    return str(int(value))


def _scopes(subgroups: dict[str, Any]):
    yield POOLED, subgroups.get(POOLED) or {}
    yield from (subgroups.get("sites") or {}).items()


def _label(scope: str, feature: str, level: str, m: dict[str, Any]) -> str:
    """The row's name; a pooled level that some sites withheld says which sites it pools."""
    if scope == POOLED and m.get("withheld_by"):
        pooled, withheld = ", ".join(m["sites"]), ", ".join(m["withheld_by"])
        return f"pooled ({pooled}; withheld by {withheld}): {feature} = {level}"
    return f"{scope}: {feature} = {level}"


def _withheld_rows(scope: str, feature: str, found: dict[str, Any], width: int) -> list[list[str]]:
    return [
        [f"{scope}: {feature} = {level}" if level != HISTOGRAMS else f"{scope}: {feature}", why["text"]]
        + [""] * (width - 2)
        for level, why in (found.get("withheld") or {}).items()
    ]


HISTOGRAMS = "histograms_withheld"


def subgroup_table(evaluation: dict[str, Any]) -> Table | None:
    subgroups = evaluation.get("subgroups")
    if not subgroups:
        return None
    threshold = evaluation["threshold"]
    header = ["group", "n", "positives", "AUROC [95% CI]", "cal. in the large [CI]", "cal. slope [CI]",
              f"TPR@{threshold:g} [CI]", f"FPR@{threshold:g} [CI]"]  # fmt: skip
    rows = []
    for scope, features in _scopes(subgroups):
        for feature, found in features.items():
            rows += [
                [_label(scope, feature, level, m), count(m, "n"), count(m, "n_positive")]
                + [_ci(m, name) for name in ("auroc", "citl", "calibration_slope", "tpr", "fpr")]
                for level, m in found["levels"].items()
            ]
            rows += _withheld_rows(scope, feature, found, len(header))
    return Table(
        "Subgroups: the global model per group of held-out test rows",
        header,
        rows,
        "calibration in the large = mean predicted risk − observed rate; under DP every level is "
        "released as noisy histograms (n and positives noisy, marked ≈, CIs: ± 1.96 SD of resamples "
        "that include the noise); without DP a level with fewer than k rows of a class is not released "
        "(nor, with it, enough others that none comes back by subtraction), CIs: percentile "
        f"bootstrap within each group; a row with a reason instead of numbers was withheld; too few: "
        f"AUROC and slope need {MIN_CLASS_ROWS} events and {MIN_CLASS_ROWS} non-events, TPR "
        f"{MIN_CLASS_ROWS} events, FPR {MIN_CLASS_ROWS} non-events",
    )


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


def _with_interval(entry: dict[str, Any]) -> str:
    interval = entry.get("auroc_ci")
    return fmt(entry["auroc"]) + (f" [{fmt(interval[0])}, {fmt(interval[1])}]" if interval else " (no CI)")


def headline_table(evaluation: dict[str, Any]) -> Table | None:
    """The worst site and group, each with its 95% CI, among those with enough patients to
    estimate; the sites left out as too few are named in the note."""
    head = evaluation.get("headline") or {}
    rows = []
    if head.get("worst_site_auroc"):
        rows.append(
            ["worst site", head["worst_site_auroc"]["site"], _with_interval(head["worst_site_auroc"])]
        )
    if head.get("worst_group_auroc"):
        group = head["worst_group_auroc"]
        rows.append(["worst group (pooled)", f"{group['feature']} = {group['level']}", _with_interval(group)])
    too_few = head.get("sites_too_few") or {}
    if not rows and not too_few:
        return None
    note = "chosen among the sites and groups whose AUROC can be estimated" + "".join(
        f"; {site}: {text}, not ranked" for site, text in too_few.items()
    )
    return Table("Headline: who is served least well", ["", "which", "AUROC [95% CI]"], rows, note)
