"""Which sites a report shows one by one: all of them, or at scale the extremes.

A report of 1,000 hospitals with a row, a column or a curve per hospital is unreadable (and a
1,000-line figure takes minutes to draw). Up to :data:`MAX_SITES_SHOWN` sites every site is
shown; beyond, the :data:`EXTREMES` lowest- and highest-AUROC sites (sites without an AUROC
after the lowest: they need a look too), and every site's figures go to ``report_sites.csv``.
Pooled figures, the heterogeneity summary and the headline always cover every site.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from federation.core import atomic

MAX_SITES_SHOWN = 20
EXTREMES = 10
SITES_CSV = "report_sites.csv"


def _auroc(metrics: dict[str, Any]) -> float:
    value = metrics.get("auroc")
    return math.nan if value is None else float(value)


def shown_sites(evaluation: dict[str, Any]) -> list[str] | None:
    """The sites shown one by one, worst first; None when every site is."""
    sites = evaluation["sites"]
    if len(sites) <= MAX_SITES_SHOWN:
        return None
    known = sorted((s for s in sites if not math.isnan(_auroc(sites[s]))), key=lambda s: _auroc(sites[s]))
    unknown = [s for s in sites if math.isnan(_auroc(sites[s]))]
    lowest = (unknown + known)[:EXTREMES]
    highest = [s for s in known[-EXTREMES:] if s not in lowest]
    return lowest + highest


def _only(mapping: dict[str, Any] | None, keep: set[str]) -> dict[str, Any] | None:
    if mapping is None:
        return None
    return {k: v for k, v in mapping.items() if k in keep or k == "pooled"}


def site_view(evaluation: dict[str, Any], shown: list[str] | None) -> dict[str, Any]:
    """``evaluation`` with every per-site part cut to ``shown`` (pooled parts untouched)."""
    if shown is None:
        return evaluation
    keep = set(shown)
    view = dict(evaluation)
    view["sites"] = {s: evaluation["sites"][s] for s in shown}
    view["data"] = _only(evaluation.get("data"), keep)
    if evaluation.get("decision_curve"):
        curves = evaluation["decision_curve"]
        view["decision_curve"] = {**curves, "sites": _only(curves.get("sites"), keep)}
    if evaluation.get("calibration_quantile"):
        view["calibration_quantile"] = _only(evaluation["calibration_quantile"], keep)
    if evaluation.get("subgroups"):
        groups = evaluation["subgroups"]
        view["subgroups"] = {**groups, "sites": _only(groups.get("sites"), keep)}
    if evaluation.get("baselines"):
        base = dict(evaluation["baselines"])
        for role in ("local_only", "pooled_centralized"):
            base[role] = {**base[role], "sites": _only(base[role]["sites"], keep)}
        view["baselines"] = base
    return view


def shown_note(evaluation: dict[str, Any], shown: list[str] | None) -> str:
    if shown is None:
        return ""
    return (
        f"{len(evaluation['sites'])} sites: tables and figures show the {EXTREMES} lowest- and "
        f"{EXTREMES} highest-AUROC sites one by one (sites without an AUROC among the lowest); "
        f"pooled figures, the heterogeneity summary and the headline cover every site; every "
        f"site's figures are in evaluation.json and {SITES_CSV}"
    )


def write_sites_csv(run_dir: Path, evaluation: dict[str, Any]) -> Path:
    """One row per site: its rows and every scalar metric (the report's 'paged' table)."""
    rows = []
    for site, metrics in evaluation["sites"].items():
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None}
        rows.append({"site": site, **(evaluation.get("data") or {}).get(site, {}), **scalars})
    path = Path(run_dir) / SITES_CSV
    atomic.write_bytes(path, pd.DataFrame(rows).to_csv(index=False).encode("utf-8"))
    return path
