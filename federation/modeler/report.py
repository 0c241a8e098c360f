"""``report.html`` (self-contained: PNGs inlined as base64, no external link) and ``report.md``.

Both are rendered from the same tables built from ``evaluation.json``, with one number
format, so the two reports and the JSON always agree.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from federation.core import atomic
from federation.core.estimable import MIN_CLASS_ROWS
from federation.core.records import RoundRecord
from federation.core.run_layout import AUDIT, DRIFT, PERSONALIZATION, REPORT_HTML, REPORT_MD, read_json
from federation.modeler import plots
from federation.modeler.report_format import Table, fmt, measure_cell
from federation.modeler.run_evaluation import POOLED, Predictions
from federation.modeler.subgroup_tables import gaps_table, headline_table, subgroup_table

__all__ = ["Table", "fmt", "render_html", "render_markdown", "tables", "write_reports"]

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
    "th{background:#eee}td:first-child{text-align:left}"
    "pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}"
)


def _epsilon(privacy: dict[str, Any], site: str, key: str = "epsilon") -> str:
    if not privacy.get("enabled"):
        return "∞ (no DP)"
    return fmt((privacy.get(key) or {}).get(site))


def data_table(evaluation: dict[str, Any]) -> Table:
    """Per site: data sizes, this run's ε, the site's lifetime ε (its ledger, every campaign)
    and, for a sweep's trial, what the whole search spent and the lifetime after it."""
    privacy = evaluation["privacy"]
    search = privacy.get("search") if privacy.get("enabled") else None
    search = search and {**search, "enabled": True}
    rows = [
        [
            site,
            fmt(d["n_train"]),
            fmt(d["n_test"]),
            fmt(evaluation["sites"][site]["n_positive"]),
            _epsilon(privacy, site),
            _epsilon(privacy, site, "site_epsilon"),
            *([_epsilon(search, site), _epsilon(search, site, "site_epsilon")] if search else []),
        ]
        for site, d in evaluation["data"].items()
    ]
    header = ["site", "train rows", "test rows", "test positives", "ε spent (this run)", "site total ε"]
    if search:
        header += [f"ε of the search ({search['trials']} trials)", "site total ε after the search"]
    note = (
        f"δ = {privacy['delta']:g}; ε target {privacy['target_epsilon']:g} per site; site total: "
        "the site's ledger after this run, every campaign it took part in"
        if privacy.get("enabled")
        else "DP off: the updates carry no privacy guarantee"
    )
    if search:
        note += f"; this run was one trial of a sweep, which every trial's ε counts in ({search['summary']})"
    return Table("Sites: data sizes and privacy spent", header, rows, note)


METRIC_COLUMNS = (  # evaluation.json key -> column
    ("auroc", "AUROC"),
    ("auprc", "AUPRC"),
    ("brier", "Brier"),
    ("ece", "ECE"),
    ("calibration_slope", "cal. slope"),
    ("calibration_intercept", "cal. intercept"),
    ("sensitivity", "sensitivity@{t}"),
    ("specificity", "specificity@{t}"),
)


def metrics_table(evaluation: dict[str, Any]) -> Table:
    """Every measure per site and pooled as 'value [95% CI]', or the too-few marker."""
    threshold = evaluation["threshold"]
    header = ["site"] + [f"{title.format(t=f'{threshold:g}')} [95% CI]" for _, title in METRIC_COLUMNS]
    named = {**evaluation["sites"], POOLED: evaluation[POOLED]}
    rows = [[site] + [measure_cell(m, key) for key, _ in METRIC_COLUMNS] for site, m in named.items()]
    source = evaluation.get("threshold_source")
    return Table(
        f"Global model (round {evaluation['round']}) on each site's held-out test rows",
        header,
        rows,
        "pooled = all sites' test rows together; CI: percentile bootstrap"
        + _no_ci_note(named)
        + f"; {_too_few_note()}"
        + (f"; threshold {threshold:g} {source}" if source else "")
        + _run_test_note(evaluation),
    )


def _too_few_note() -> str:
    return (
        f"too few: a measure needing both classes (AUROC, AUPRC, calibration slope/intercept), "
        f"or events (sensitivity) or non-events (specificity), is not estimated below "
        f"{MIN_CLASS_ROWS} of them (federation.core.estimable)"
    )


def _no_ci_note(named: dict[str, Any]) -> str:
    reasons = sorted({r["text"] for m in named.values() for r in (m.get("ci_unavailable") or {}).values()})
    return "".join(f"; (no CI): {text}" for text in reasons)


def _run_test_note(evaluation: dict[str, Any]) -> str:
    """Where this table is not the run's own figure (a simulation scored here), the run's own
    pooled test AUROC beside it: the one its console, summary.json and MLflow hold."""
    run = evaluation.get("run_test")
    if not run or not str(evaluation.get("mode", "")).startswith("simulation"):
        return ""
    interval = run.get("auroc_ci")
    released = fmt(run.get("auroc")) + (f" [{fmt(interval[0])}, {fmt(interval[1])}]" if interval else "")
    how = "from the sites' noisy DP releases" if run.get("dp") else "from the sites' released histograms"
    return (
        f". The run's own pooled test AUROC of round {run.get('round')} (lhsfed-train's last line, "
        f"summary.json, MLflow's selected/test/pooled/auroc): {released}, {how}; this table scores "
        "the same model here on the simulated sites' exact rows"
    )


def _baseline_training(base: dict[str, Any]) -> str:
    """What the baselines trained: the rounds up to the model handed out (older files: epochs)."""
    trained = base.get("trained")
    if not trained:
        return f"{base['epochs']} epochs"
    matched = (
        " at the ε each site's training had spent by then" if trained.get("site_training_epsilon") else ""
    )
    return (
        f"{trained['epochs']} epochs, the federation's rounds 1–{trained['rounds']} (the model "
        f"evaluated; {trained['rounds_planned']} planned){matched}"
    )


def baselines_table(evaluation: dict[str, Any]) -> Table | None:
    base = evaluation.get("baselines")
    if not base:
        return None
    local, central, benefit = (
        base["local_only"]["sites"],
        base["pooled_centralized"]["sites"],
        base["benefit_auroc"],
    )
    rows = [
        [site, fmt(m["auroc"]), fmt(local[site]["auroc"]), fmt(central[site]["auroc"]), fmt(benefit[site])]
        for site, m in evaluation["sites"].items()
    ]
    means = [
        evaluation["mean_auroc"],
        base["local_only"]["mean_auroc"],
        base["pooled_centralized"]["mean_auroc"],
        benefit,
    ]
    rows.append(["mean of sites"] + [fmt(m["mean"]) for m in means])
    rows.append(["mean weighted by test rows"] + [fmt(m["weighted_mean"]) for m in means])
    rows.append(
        ["all test rows pooled"]
        + [
            fmt(evaluation[POOLED]["auroc"]),
            fmt(local[POOLED]["auroc"]),
            fmt(central[POOLED]["auroc"]),
            fmt(benefit[POOLED]),
        ]
    )
    return Table(
        "AUROC: federated vs local-only vs pooled centralized",
        ["site", "global (federated)", "local-only", "pooled centralized", "benefit (global − local)"],
        rows,
        "pooled row: local-only scores each site's rows with that site's own model; "
        f"baselines trained {_baseline_training(base)} with the run's model and DP settings; "
        f"ε spent: local-only {_baseline_epsilon(base['local_only']['epsilon'])}, "
        f"pooled {_baseline_epsilon(base['pooled_centralized']['epsilon'])}",
    )


def _baseline_epsilon(epsilon: float | dict[str, float] | None) -> str:
    if isinstance(epsilon, dict):
        known = [v for v in epsilon.values() if v is not None]
        return f"at most {fmt(max(known))} per site" if known else "∞ (no DP)"
    return "∞ (no DP)" if epsilon is None else fmt(epsilon)


def _auc_with_interval(attack: dict[str, Any]) -> str:
    low, high = attack["auc_ci95"]
    return f"{fmt(attack['auc'])} [{fmt(low, 2)}, {fmt(high, 2)}]"


def audit_table(audit: dict[str, Any] | None) -> Table | None:
    """Membership-inference audit (``lhsfed audit``): attack AUC and TPR at 1 % FPR per site."""
    if not audit:
        return None
    loss, lira = audit["attacks"]["loss_threshold"], audit["attacks"]["lira_offline"]
    rows = [
        [
            site.replace("_", " "),
            _auc_with_interval(loss[site]),
            _auc_with_interval(lira[site]),
            f"{fmt(loss[site]['tpr_at_1pct_fpr'])} / {fmt(lira[site]['tpr_at_1pct_fpr'])}",
        ]
        for site in loss
    ]
    return Table(
        "Privacy audit: membership inference on the global model",
        ["site", "loss-threshold AUC [95 %]", "offline LiRA AUC [95 %]", "TPR at 1 % FPR (loss / LiRA)"],
        rows,
        "members: each site's training records; non-members: its held-out test records; "
        f"AUC 0.5 = no better than chance; {audit['shadows']} shadow federations",
    )


def read_audit(run_dir: Path) -> dict[str, Any] | None:
    """``audit.json`` (written by ``lhsfed audit``), None if the run was not audited."""
    return read_json(Path(run_dir) / AUDIT)


def rounds_table(evaluation: dict[str, Any], records: list[RoundRecord]) -> Table | None:
    """Per round: the pooled validation metrics that chose the round, and the pooled test
    AUROC, shown for reference only (it took no part in the choice)."""
    if not records:
        return None
    selection = evaluation.get("selection") or {}
    chosen = selection.get("round")
    rows = [
        [
            str(r.round) + (" (selected)" if r.round == chosen else ""),
            fmt(r.validation.pooled.get("loss"), 4),
            fmt(r.validation.pooled.get("auroc")),
            fmt(r.evaluate.pooled.get("auroc")),
        ]
        for r in records
    ]
    note = (
        f"selected by the best pooled validation {selection.get('metric', 'loss')}"
        + ("; stopped early (patience ran out)" if selection.get("stopped_early") else "")
        if selection
        else "run from before round selection: its last round is shown"
    )
    return Table(
        "Rounds: validation (chooses the round) and test (not used for selection)",
        ["round", "validation loss", "validation AUROC", "test AUROC (not used for selection)"],
        rows,
        note,
    )


def _auroc_ci(model: dict[str, Any]) -> str:
    low, high = model.get("auroc_ci") or [None, None]
    return f"{fmt(model.get('auroc'))} [{fmt(low, 2)}, {fmt(high, 2)}]"


def _pair(entry: dict[str, Any], key: str, digits: int) -> str:
    return f"{fmt(entry['global'][key], digits)} / {fmt(entry['personalized'][key], digits)}"


def _flag(entry: dict[str, Any]) -> str:
    """ "WORSE" and the measures that made it so (older files carry the flag alone)."""
    if not entry["worse"]:
        return ""
    reasons = entry.get("worse_reasons") or []
    return "WORSE: " + "; ".join(reasons) if reasons else "WORSE"


def personalization_table(personalization: dict[str, Any] | None) -> Table | None:
    """Global vs personalized per site (``personalization.json``), the worse sites flagged."""
    if not personalization:
        return None
    rows = [
        [
            site.replace("_", " "),
            str(entry["n_test"]),
            _auroc_ci(entry["global"]),
            _auroc_ci(entry["personalized"]),
            _pair(entry, "calibration_slope", 2),
            _pair(entry, "brier", 3),
            fmt(entry.get("epsilon")) if "steps" in entry else "no ε (recalibration)",
            _flag(entry),
        ]
        for site, entry in personalization["sites"].items()
    ]
    rows += [
        [site.replace("_", " "), "", "", "", "", "", "", f"refused: {why}"]
        for site, why in personalization.get("refused", {}).items()
    ]
    return Table(
        f"Personalization ({personalization['mode']}): global vs personalized per site (test rows)",
        [
            "site",
            "n test",
            "global AUROC [95 %]",
            "personalized AUROC [95 %]",
            "calibration slope (global / personalized)",
            "Brier (global / personalized)",
            "run ε with fine-tuning",
            "flag",
        ],
        rows,
        f"each site's personalized model stays at the site; {personalization['rule']}",
    )


def read_personalization(run_dir: Path) -> dict[str, Any] | None:
    """``personalization.json`` (a run with personalize=recalibrate|finetune), else None."""
    return read_json(Path(run_dir) / PERSONALIZATION)


def drift_table(drift: dict[str, Any] | None) -> Table | None:
    """The drift check that preceded this campaign (``drift.json``: lhsfed drift of the
    champion it was warm-started from), one row per site, its flagged features named."""
    if not drift:
        return None

    def largest(features: dict[str, Any], key: str) -> str:
        values = [abs(f[key]) for f in features.values() if f.get(key) is not None]
        return fmt(max(values)) if values else "-"

    rows = []
    for site, entry in drift.get("sites", {}).items():
        features = entry.get("features", {})
        flagged = [name for name, f in features.items() if f.get("flagged")]
        rows.append(
            [
                site.replace("_", " "),
                "FLAGGED" if entry.get("flagged") else "",
                ", ".join(flagged) or "-",
                largest(features, "smd"),
                largest(features, "missing_change"),
                largest(features, "psi"),
            ]
        )
    rows += [[site, "", f"refused: {why}", "", "", ""] for site, why in drift.get("refused", {}).items()]
    limits = drift.get("thresholds", {})
    return Table(
        f"Drift before this campaign (champion version {drift.get('champion', {}).get('version')})",
        ["site", "flag", "flagged features", "largest |SMD|", "largest |Δ missing|", "largest PSI"],
        rows,
        f"each site against its own reference of the champion's run, {drift.get('created', '')}; "
        f"flags: |SMD| > {limits.get('smd')}, PSI > {limits.get('psi')}, "
        f"|Δ missing| > {limits.get('missing')}",
    )


def tables(
    evaluation: dict[str, Any], audit: dict[str, Any] | None = None, records: list[RoundRecord] | None = None
) -> list[Table]:
    found = [
        headline_table(evaluation),
        data_table(evaluation),
        metrics_table(evaluation),
        subgroup_table(evaluation),
        gaps_table(evaluation),
        rounds_table(evaluation, records or []),
        baselines_table(evaluation),
        audit_table(audit),
        personalization_table(read_personalization(Path(evaluation["run_dir"]))),
        drift_table(read_json(Path(evaluation["run_dir"]) / DRIFT)),
    ]
    return [t for t in found if t is not None]


def markdown_table(table: Table) -> str:
    lines = [
        f"## {table.title}",
        "",
        "| " + " | ".join(table.header) + " |",
        "|" + "---|" * len(table.header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines + ([f"\n{table.note}"] if table.note else []))


def html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    note = f"<p>{html.escape(table.note)}</p>" if table.note else ""
    return f"<h2>{html.escape(table.title)}</h2><table><tr>{head}</tr>{body}</table>{note}"


def figures(
    records: list[RoundRecord], predictions: Predictions | None, evaluation: dict[str, Any] | None = None
) -> dict[str, bytes]:
    """Rounds curve, ROC where the rows' predictions are at hand (simulation), and the
    decision curves and quantile calibration of evaluation.json (both modes)."""
    evaluation = evaluation or {}
    found = {"ROC curves": plots.roc_curves(predictions)} if predictions else {}
    if evaluation.get("calibration_quantile"):
        found["Calibration"] = plots.quantile_calibration_plot(evaluation["calibration_quantile"])
    if evaluation.get("decision_curve"):
        found["Decision curves"] = plots.decision_curves(evaluation["decision_curve"])
    if records:
        rounds = plots.rounds_curve([r.to_json() for r in records], evaluation.get("selection"))
        found = {"Rounds": rounds, **found}
    return found


# What a reader needs to read a figure, under it (issue T.4: the decision curves had none).
FIGURE_NOTES = {
    "Rounds": "the dotted line marks the round handed out, chosen by the pooled validation "
    "loss or AUROC; test values are shown, never used to choose",
    "Decision curves": plots.DECISION_CURVE_NOTE,
}


def _img(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = f"{title}: {FIGURE_NOTES[title]}" if title in FIGURE_NOTES else title
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render_html(
    evaluation: dict[str, Any],
    figs: dict[str, bytes],
    config_text: str,
    audit: dict[str, Any] | None = None,
    records: list[RoundRecord] | None = None,
) -> str:
    title = f"lhs-federation report: {Path(evaluation['run_dir']).name}"
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>Run folder {html.escape(evaluation['run_dir'])}; evaluated "
        f"{html.escape(evaluation['evaluated_at'])} ({evaluation['mode']}).</p>",
    ]
    parts += [html_table(t) for t in tables(evaluation, audit, records)]
    parts += ["<h2>Figures</h2>"] + [_img(name, png) for name, png in figs.items()]
    parts += [f"<h2>Configuration</h2><pre>{html.escape(config_text)}</pre></body></html>"]
    return "\n".join(parts)


def render_markdown(
    evaluation: dict[str, Any],
    config_text: str,
    audit: dict[str, Any] | None = None,
    records: list[RoundRecord] | None = None,
) -> str:
    parts = [
        f"# lhs-federation report: {Path(evaluation['run_dir']).name}",
        "",
        f"Run folder `{evaluation['run_dir']}`; evaluated {evaluation['evaluated_at']} "
        f"({evaluation['mode']}). Figures are in report.html.",
    ]
    parts += ["\n" + markdown_table(t) for t in tables(evaluation, audit, records)]
    parts += ["\n## Configuration\n", "```yaml", config_text.rstrip(), "```", ""]
    return "\n".join(parts)


def write_reports(
    run_dir: Path,
    evaluation: dict[str, Any],
    predictions: Predictions | None,
    records: list[RoundRecord],
    config_text: str,
) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    audit = read_audit(run_dir)
    page = render_html(evaluation, figures(records, predictions, evaluation), config_text, audit, records)
    atomic.write_bytes(run_dir / REPORT_HTML, page.encode("utf-8"))
    atomic.write_bytes(
        run_dir / REPORT_MD, render_markdown(evaluation, config_text, audit, records).encode("utf-8")
    )
    return run_dir / REPORT_HTML, run_dir / REPORT_MD
