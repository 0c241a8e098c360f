"""``report.html`` (self-contained: PNGs inlined as base64, no external link) and ``report.md``.

Both are rendered from the same tables built from ``evaluation.json``, with one number
format, so the two reports and the JSON always agree.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from federation.core import atomic
from federation.core.data import load_site, site_file
from federation.core.estimable import MIN_CLASS_ROWS
from federation.core.records import RoundRecord
from federation.core.run_layout import (
    AUDIT,
    DRIFT,
    HYDRA_CONFIG,
    MODEL,
    PERSONALIZATION,
    REPORT_HTML,
    REPORT_MD,
    read_json,
    round_model,
)
from federation.modeler import plots
from federation.modeler.heterogeneity import heterogeneity
from federation.modeler.report_format import Table, fmt, measure_cell
from federation.modeler.report_sections import (
    ReportInputs,
    coefficients_table,
    decision_table,
    fill_in_table,
    glm_record,
    heterogeneity_table,
    identity_table,
    limitations_table,
    missing_shares,
    missingness_table,
    outcome_table,
    participants_table,
    population_table,
    report_title,
)
from federation.modeler.run_evaluation import POOLED, Predictions
from federation.modeler.run_loader import data_dir_of, load_saved_model, read_summary, run_config
from federation.modeler.site_view import shown_note, shown_sites, site_view, write_sites_csv
from federation.modeler.subgroup_tables import gaps_table, headline_table, subgroup_table

__all__ = ["ReportDocument", "Section", "Table", "fmt", "render_html", "render_markdown", "write_reports"]


@dataclass(frozen=True)
class Section:
    """One TRIPOD+AI section: its tables, figures (by title; HTML only) or code block."""

    heading: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table | None, ...] = ()
    figures: tuple[str, ...] = ()
    code: str = ""


@dataclass(frozen=True)
class ReportDocument:
    """What report.md and report.html both render (one structure, two templates)."""

    title: str
    lines: tuple[str, ...]
    sections: tuple[Section, ...]


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
        [site, _with_ci(m), _with_ci(local[site]), _with_ci(central[site]), _benefit(base, site)]
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
            _with_ci(evaluation[POOLED]),
            _with_ci(local[POOLED]),
            _with_ci(central[POOLED]),
            _benefit(base, POOLED),
        ]
    )
    return Table(
        "AUROC: federated vs local-only vs pooled centralized",
        ["site", "global (federated)", "local-only", "pooled centralized", "benefit (global − local)"],
        rows,
        "AUROC [95 % percentile bootstrap CI]; benefit CI: the paired bootstrap of the difference "
        "(the same resampled rows scored by both models); "
        "pooled row: local-only scores each site's rows with that site's own model; "
        f"baselines trained {_baseline_training(base)} with the run's model and DP settings; "
        f"ε spent: local-only {_baseline_epsilon(base['local_only']['epsilon'])}, "
        f"pooled {_baseline_epsilon(base['pooled_centralized']['epsilon'])}",
    )


def _with_ci(m: dict[str, Any]) -> str:
    """AUROC [low, high], or the too-few marker (report_format.measure_cell)."""
    return measure_cell(m, "auroc", missing_ci="")


def _benefit(base: dict[str, Any], site: str) -> str:
    """global − local AUROC, with its paired-bootstrap CI where evaluate computed one."""
    interval = (base.get("benefit_auroc_ci") or {}).get(site)
    value = fmt(base["benefit_auroc"][site])
    return value if not interval else f"{value} [{fmt(interval[0])}, {fmt(interval[1])}]"


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
    auroc = (evaluation.get("heterogeneity") or {}).get("auroc") or {}
    if auroc.get("summary") is not None:
        found["Forest plot"] = plots.forest_plot(auroc, shown=list(evaluation["sites"]))
    if records:
        rounds = plots.rounds_curve([r.to_json() for r in records], evaluation.get("selection"))
        found = {"Rounds": rounds, **found}
    return found


# What a reader needs to read a figure, under it (issue T.4: the decision curves had none).
FIGURE_NOTES = {
    "Rounds": "the dotted line marks the round handed out, chosen by the pooled validation "
    "loss or AUROC; test values are shown, never used to choose",
    "Decision curves": plots.DECISION_CURVE_NOTE,
    "Forest plot": "each site's AUROC with its 95 % interval (square: its random-effects weight); "
    "diamond: the random-effects summary and its 95 % CI",
}


def _img(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    caption = f"{title}: {FIGURE_NOTES[title]}" if title in FIGURE_NOTES else title
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def report_document(
    inputs: ReportInputs,
    config_text: str,
    audit: dict[str, Any] | None = None,
    records: list[RoundRecord] | None = None,
    sites_note: str = "",
) -> ReportDocument:
    """The report's one data structure, in TRIPOD+AI order; both templates render it.
    ``sites_note``: which sites the per-site tables show, when not all (site_view)."""
    evaluation, records = inputs.evaluation, records or []
    run_dir = Path(evaluation["run_dir"])
    fairness = [subgroup_table(evaluation), gaps_table(evaluation)]
    no_fairness = (
        ()
        if any(fairness)
        else ("The dataset spec marks no subgroup feature (subgroup: true or subgroup_bins), so no "
              "site released subgroup figures.",)
    )  # fmt: skip
    sections = [
        Section("Identity", tables=(identity_table(inputs),)),
        Section("Intended use", tables=(fill_in_table(inputs),)),
        Section("Outcome", tables=(outcome_table(inputs),)),
        Section(
            "Participants and data",
            tables=(participants_table(inputs, records), population_table(inputs), missingness_table(inputs)),
        ),
        Section("Model specification", tables=(coefficients_table(inputs),)),
        Section(
            "Model performance",
            paragraphs=(sites_note,) if sites_note else (),
            tables=(headline_table(evaluation), metrics_table(evaluation), baselines_table(evaluation)),
            figures=("ROC curves", "Calibration"),
        ),
        Section(
            "Between-site heterogeneity",
            tables=(heterogeneity_table(evaluation),),
            figures=("Forest plot",),
        ),
        Section("Decision curves", tables=(decision_table(evaluation),), figures=("Decision curves",)),
        Section("Fairness", paragraphs=no_fairness, tables=tuple(fairness)),
        Section("Model development", tables=(rounds_table(evaluation, records),), figures=("Rounds",)),
        Section("Privacy", tables=(data_table(evaluation), audit_table(audit))),
        Section(
            "Updating and monitoring",
            tables=(
                personalization_table(read_personalization(run_dir)),
                drift_table(read_json(run_dir / DRIFT)),
            ),
        ),
        Section("Limitations", tables=(limitations_table(inputs),)),
        Section("Configuration", code=config_text),
    ]
    kept = [
        replace(s, tables=tuple(t for t in s.tables if t is not None))
        for s in sections
        if s.code or s.paragraphs or any(t is not None for t in s.tables)
    ]
    lines = (
        f"Run folder {evaluation['run_dir']}; evaluated {evaluation['evaluated_at']} ({evaluation['mode']}).",
    )
    return ReportDocument(report_title(inputs), lines, tuple(kept))


@cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md_cell"] = lambda cell: str(cell).replace("|", "\\|").replace("\n", " ")
    return env


def render_html(doc: ReportDocument, figs: dict[str, bytes]) -> str:
    figures = {
        title: {
            "data": base64.b64encode(png).decode("ascii"),
            "caption": f"{title}: {FIGURE_NOTES[title]}" if title in FIGURE_NOTES else title,
        }
        for title, png in figs.items()
    }
    return _templates().get_template("report.html.j2").render(doc=doc, figures=figures, style=_STYLE)


def render_markdown(doc: ReportDocument) -> str:
    return _templates().get_template("report.md.j2").render(doc=doc)


def report_inputs(run_dir: Path, evaluation: dict[str, Any], shown: list[str] | None = None) -> ReportInputs:
    """What the report reads besides evaluation.json: the run's config, the model evaluated
    (its round's checkpoint), summary.json, glm.json and, in simulation, the missingness of the
    sites shown (``shown``; None: every site)."""
    run_dir = Path(run_dir)
    round_file = run_dir / round_model(int(evaluation["round"]))
    checkpoint = load_saved_model(round_file if round_file.is_file() else run_dir / MODEL)
    config = run_config(run_dir) if (run_dir / HYDRA_CONFIG).is_file() else {}
    missingness = None
    if str(evaluation.get("mode", "")).startswith("simulation"):
        spec, folder = checkpoint.dataset, data_dir_of(run_dir) if config else None
        names = [n for n in (shown or spec.site_names) if n in evaluation["sites"]]
        missingness = missing_shares([load_site(site_file(spec, n, folder), spec, n) for n in names], spec)
    if not evaluation.get("heterogeneity"):
        evaluation = {**evaluation, "heterogeneity": heterogeneity(evaluation["sites"])}
    return ReportInputs(
        evaluation, config, checkpoint, read_summary(run_dir), glm_record(run_dir), missingness
    )


def write_reports(
    run_dir: Path,
    evaluation: dict[str, Any],
    predictions: Predictions | None,
    records: list[RoundRecord],
    config_text: str,
) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    shown = shown_sites(evaluation)
    inputs = report_inputs(run_dir, evaluation, shown)
    inputs = replace(inputs, evaluation=site_view(inputs.evaluation, shown))
    if shown is not None:
        write_sites_csv(run_dir, evaluation)
        predictions = predictions and {k: v for k, v in predictions.items() if k in shown or k == POOLED}
    doc = report_document(inputs, config_text, read_audit(run_dir), records, shown_note(evaluation, shown))
    page = render_html(doc, figures(records, predictions, inputs.evaluation))
    atomic.write_bytes(run_dir / REPORT_HTML, page.encode("utf-8"))
    atomic.write_bytes(run_dir / REPORT_MD, render_markdown(doc).encode("utf-8"))
    return run_dir / REPORT_HTML, run_dir / REPORT_MD
