"""``comparison.html``: champion vs challenger per site and pooled, in the report's style.

Rendered from ``comparison.json`` alone (what the sites released), with the report's number
format and style sheet, so the page and the JSON always agree. Self-contained: no link out.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from federation.core import atomic
from federation.core.promotion_rule import PromotionRule, judge
from federation.modeler import plots
from federation.modeler.report import _STYLE, _img, fmt

COMPARISON_HTML = "comparison.html"
HEADER = [
    "site", "n test", "champion AUROC", "challenger AUROC", "difference", "95% CI (paired)",
    "champion slope", "champion intercept", "champion ECE",
    "challenger slope", "challenger intercept", "challenger ECE",
]  # fmt: skip


def site_rows(document: dict[str, Any]) -> list[list[str]]:
    """One row per site that answered, then the pooled row (AUROC from the summed histograms)."""
    rows = []
    for site, entry in sorted(document.get("sites", {}).items()):
        low, high = entry["difference_ci"]
        calibration = [
            fmt(entry[role][key])
            for role in ("champion", "challenger")
            for key in ("calibration_slope", "calibration_intercept", "ece")
        ]
        rows.append(
            [
                site,
                fmt(entry["n_test"]),
                fmt(entry["champion"]["auroc"]),
                fmt(entry["challenger"]["auroc"]),
                fmt(entry["auroc_difference"]),
                "n/a (the DP noise decides it)" if entry.get("too_noisy") else f"[{fmt(low)}, {fmt(high)}]",
                *calibration,
            ]
        )
    pooled = document.get("pooled", {})
    n = sum(e["n_test"] for e in document.get("sites", {}).values())
    low, high = pooled.get("auroc_difference_ci") or [None, None]
    interval = "n/a" if low is None or high is None else f"[{fmt(low)}, {fmt(high)}] (pooled)"
    ece = (pooled.get("measures") or {}).get("ece") or {}
    rows.append(
        ["pooled", fmt(n), fmt(pooled.get("champion_auroc")), fmt(pooled.get("challenger_auroc")),
         fmt(pooled.get("auroc_difference")), interval, "n/a", "n/a", fmt(ece.get("champion")),
         "n/a", "n/a", fmt(ece.get("challenger"))]
    )  # fmt: skip
    return rows


def rule_section(document: dict[str, Any], rule: PromotionRule | None = None) -> str:
    """The promotion rule (default margins) per part, the sites too small to tell, and overall."""
    rule = rule or PromotionRule()
    verdict = judge(document, rule)
    rows = "".join(
        f"<tr><td>{html.escape(part.name)}</td><td><b>{'pass' if part.passed else 'FAIL'}</b></td>"
        f"<td>{html.escape(part.detail)}</td></tr>"
        for part in verdict.parts
    )
    small = "".join(f"<li>{html.escape(note)}</li>" for note in verdict.too_small)
    return (
        "<h2>Promotion rule</h2>"
        f"<p>With lhsfed promote's default margins: {html.escape(rule.text())}. The margins are "
        "judgment calls (docs/learning-loop.md, 'Act').</p>"
        f"<table><tr><th>part</th><th>outcome</th><th>figures</th></tr>{rows}</table>"
        + (
            "<p>Too small to tell (interval wider than the stated width: such a site neither "
            f"blocks nor vouches for the challenger):</p><ul>{small}</ul>"
            if small
            else ""
        )
        + f"<p><b>Overall: {'PASS' if verdict.passed else 'FAIL'}</b></p>"
    )


def _model_line(document: dict[str, Any], role: str) -> str:
    model = document.get(role) or {}
    version = f" (version {model['version']})" if model.get("version") else ""
    return f"<p><b>{role}</b>: {html.escape(str(model.get('source')))}{html.escape(version)}</p>"


def render(document: dict[str, Any]) -> str:
    """The page as one HTML string."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in site_rows(document)
    )
    refused = "".join(
        f"<li>{html.escape(site)}: {html.escape(reason)}</li>"
        for site, reason in sorted(document.get("refused", {}).items())
    )
    title = f"Champion vs challenger: {document.get('task')}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"{_model_line(document, 'champion')}{_model_line(document, 'challenger')}"
        "<p>Each site scored both models on its current test rows. Difference: challenger − "
        "champion AUROC; its CI is a paired bootstrap computed at the site (the same resampled "
        "rows for both models). Pooled AUROC and ECE: from the sites' summed score histograms; "
        "the pooled difference's CI resamples both models' summed histograms (DP noise "
        "included; the two models' pairing is not in the histograms, so it is conservative).</p>"
        f"<table><tr>{head}</tr>{body}</table>"
        + rule_section(document)
        + _figures(document.get("pooled_curves") or {})
        + (f"<h2>Sites that did not compare</h2><ul>{refused}</ul>" if refused else "")
        + f"<p>Created {html.escape(str(document.get('created')))}; run folder "
        f"{html.escape(str(document.get('run_folder')))}.</p></body></html>\n"
    )


def _figures(curves: dict[str, Any]) -> str:
    """Both models' pooled decision curves and calibration (none if no site answered)."""
    if not curves:
        return ""
    return (
        "<h2>Pooled decision curves and calibration</h2>"
        + _img("Decision curves", plots.compared_decision_curves(curves["decision_curves"]))
        + _img("Calibration", plots.quantile_calibration_plot(curves["calibration"]))
    )


def write_page(document: dict[str, Any], folder: Path) -> Path:
    """``comparison.html`` in ``folder``, written atomically; returns its path."""
    path = Path(folder) / COMPARISON_HTML
    atomic.write_bytes(path, render(document).encode())
    return path
