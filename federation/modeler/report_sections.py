"""The report's TRIPOD+AI tables: identity, outcome, participants, model, heterogeneity, decisions.

TRIPOD+AI (Collins et al., BMJ 2024) and TRIPOD-Cluster (Debray et al., BMJ 2023) list what a
prediction-model report must let a reader check: what is predicted for whom and how, from
which data, with what model, how well at each site and how much that varies, and what it is
for. Each function here builds one such table from what the run folder holds; the fill-in
fields (intended use, threshold rationale, limitations) come from the run config's
``report:`` group and say so when they were left empty.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import federation
from federation.core.dataspec import DatasetSpec
from federation.core.subgroups import spec_levels
from federation.modeler.report_format import Table, fmt
from federation.modeler.run_loader import SavedModel

POOLED = "pooled"
# Net benefit is tabulated at these risk thresholds (the figure has every 0.01).
DECISION_THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
FILL_IN = {
    "intended_use": "Intended use",
    "threshold_rationale": "Threshold rationale",
    "limitations": "Limitations stated by the modeler",
}
MODEL_NAMES = {
    "logreg": "logistic regression",
    "mlp": "multilayer perceptron",
    "glm": "logistic regression (exact federated Newton)",
}


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report reads besides evaluation.json."""

    evaluation: dict[str, Any]
    config: dict[str, Any]  # the run's composed Hydra config
    checkpoint: SavedModel  # the model evaluated
    summary: dict[str, Any]
    glm: dict[str, Any] | None  # glm.json of a model=glm run
    missingness: dict[str, dict[str, float]] | None  # site -> feature -> share missing (simulation)

    @property
    def spec(self) -> DatasetSpec:
        return self.checkpoint.dataset


def label_rule(spec: DatasetSpec) -> str:
    """``num in {1, 2, 3, 4} vs {0}``: which label values are the outcome."""
    positives = ", ".join(f"{v:g}" for v in spec.label.positive_values)
    negatives = ", ".join(f"{v:g}" for v in spec.label.negative_values)
    return f"{spec.label.column} in {{{positives}}} vs {{{negatives}}}"


def outcome_text(spec: DatasetSpec) -> str:
    """The outcome as the spec defines it (``outcome.definition``), else its label rule."""
    return getattr(spec, "outcome_definition", None) or label_rule(spec)


def model_text(inputs: ReportInputs) -> str:
    name = str((inputs.config.get("model") or {}).get("name") or inputs.checkpoint.spec.name)
    text = MODEL_NAMES.get(name, name)
    if inputs.checkpoint.spec.hidden:
        text += f" ({inputs.checkpoint.spec.hidden} hidden units)"
    return text


def privacy_text(evaluation: dict[str, Any]) -> str:
    privacy = evaluation["privacy"]
    if not privacy.get("enabled"):
        return "no differential privacy"
    return f"record-level DP, ε = {privacy['target_epsilon']:g} per site, δ = {privacy['delta']:g}"


def report_title(inputs: ReportInputs) -> str:
    """TRIPOD+AI item 1: the title names the task, the outcome, the model and the data."""
    spec = inputs.spec
    positives = ", ".join(f"{v:g}" for v in spec.label.positive_values)
    outcome = getattr(spec, "outcome_definition", None) or f"{spec.label.column} in {{{positives}}}"
    sites = len(inputs.evaluation["sites"])
    return (
        f"Risk of {outcome}: a federated {model_text(inputs)} developed and validated across "
        f"{sites} sites ({spec.name}, {privacy_text(inputs.evaluation)})"
    )


def spec_sha256(spec: DatasetSpec) -> str:
    """The SHA-256 of the dataset spec's canonical JSON: which data definition this run used."""
    return hashlib.sha256(spec.to_json().encode("utf-8")).hexdigest()


def identity_table(inputs: ReportInputs) -> Table:
    evaluation, spec = inputs.evaluation, inputs.spec
    selection = evaluation.get("selection") or {}
    model_file = inputs.checkpoint.path
    rows = [
        ["task", "binary risk: the probability that the outcome is present"],
        ["outcome", outcome_text(spec)],
        ["model", model_text(inputs)],
        ["privacy", privacy_text(evaluation)],
        [
            "training",
            f"{inputs.summary.get('strategy', 'fedavg')}, {len(inputs.evaluation['data'])} sites, "
            f"{selection.get('rounds_planned', inputs.summary.get('rounds'))} rounds planned; the "
            f"model evaluated is round {evaluation['round']}"
            + (f", chosen by pooled validation {selection['metric']}" if selection.get("metric") else ""),
        ],
        ["data spec", f"{spec.name}, SHA-256 {spec_sha256(spec)}"],
        ["code version", f"lhs-federation {federation.__version__}"],
        ["model file", f"{model_file.name}, SHA-256 {hashlib.sha256(model_file.read_bytes()).hexdigest()}"],
        ["run folder", str(evaluation["run_dir"])],
        ["evaluated", f"{evaluation['evaluated_at']} ({evaluation['mode']})"],
    ]
    return Table("Identity", ["item", "value"], rows)


def fill_in_table(inputs: ReportInputs) -> Table:
    """Intended use, threshold rationale, limitations: the modeler's words, or where to put them."""
    given = inputs.config.get("report") or {}
    rows = [
        [label, str(given.get(key)) if given.get(key) else f"not stated (set report.{key} in the run config)"]
        for key, label in FILL_IN.items()
    ]
    threshold = inputs.evaluation["threshold"]
    rows.insert(
        2,
        [
            "Threshold evaluated",
            f"{threshold:g}, {inputs.evaluation.get('threshold_source', '')}".rstrip(", "),
        ],
    )
    return Table("Intended use", ["item", "as stated"], rows)


def outcome_table(inputs: ReportInputs) -> Table:
    spec = inputs.spec
    horizon = getattr(spec, "outcome_horizon", None)
    rows = [
        ["definition", outcome_text(spec)],
        ["horizon", horizon or "not stated (set outcome.horizon in the dataset spec)"],
        ["label", label_rule(spec)],
    ]
    return Table("Outcome", ["item", "value"], rows)


def _prevalence(metrics: dict[str, Any]) -> str:
    n, positives = metrics.get("n"), metrics.get("n_positive")
    if not n or positives is None:
        return "n/a"
    return fmt(positives / n)


def _trained_rounds(records: list[Any], site: str) -> int:
    return sum(1 for r in records if site in (r.train or {}))


def participants_table(inputs: ReportInputs, records: list[Any]) -> Table:
    """Participant flow per site: rows in each split, test events, rounds it trained."""
    evaluation = inputs.evaluation
    never = set(inputs.summary.get("sites_never_trained") or [])
    rows = []
    for site, data in evaluation["data"].items():
        metrics = evaluation["sites"].get(site, {})
        rows.append(
            [
                site,
                fmt(data.get("n_train")),
                fmt(data.get("n_validation")),
                fmt(data.get("n_test")),
                fmt(metrics.get("n_positive")),
                _prevalence(metrics),
                "never trained" if site in never else str(_trained_rounds(records, site)),
            ]
        )
    skipped = evaluation.get("skipped") or {}
    rows += [[site, "", "", "", "", "", f"left out: {why}"] for site, why in skipped.items()]
    return Table(
        "Participants: flow per site",
        ["site", "training rows", "validation rows", "test rows", "test events", "test prevalence",
         "rounds trained"],
        rows,
        "each site splits its own rows (seeded, stratified): test rows only score the model, "
        "validation rows choose the round, training rows train it",
    )  # fmt: skip


def _share_cell(found: dict[str, Any] | None, level: str, n: Any) -> str:
    """A site's share of test rows in one level: the share, or what withheld it."""
    if found is None:
        return "not released"
    m = (found.get("levels") or {}).get(level)
    if m is not None and m.get("n") is not None and n:
        return fmt(m["n"] / n)
    why = (found.get("withheld") or {}).get(level) or {}
    return "withheld: " + why.get("reason", "not released").replace("_", " ")


def population_table(inputs: ReportInputs) -> Table:
    """Per site: its test rows' share in each subgroup level (from the counts the sites
    released), levels in the spec's order, each withheld cell with its reason."""
    evaluation = inputs.evaluation
    released = (evaluation.get("subgroups") or {}).get("sites") or {}
    levels = spec_levels(inputs.spec)
    columns = [(feature, level) for feature, names in levels.items() for level in names]
    rows = []
    for site in evaluation["data"]:
        n = (evaluation["sites"].get(site) or {}).get("n")
        found = released.get(site) or {}
        rows.append(
            [site, fmt(n), _prevalence(evaluation["sites"].get(site, {}))]
            + [_share_cell(found.get(feature), level, n) for feature, level in columns]
        )
    dp = evaluation["privacy"].get("enabled") and not str(evaluation.get("mode", "")).startswith("simulation")
    note = (
        "shares of each site's test rows, from the level counts the site released with its subgroup "
        + ("histograms (noisy DP counts: read them as approximate)" if dp else "figures")
        + "; withheld: k rule = under k rows of a class in the level (or hidden with such a level "
        "so that none comes back by subtraction)"
        if columns
        else "the dataset spec marks no subgroup feature, so no site released level counts"
    )
    return Table(
        "Population: characteristics per site (test rows)",
        ["site", "test rows", "prevalence", *(f"{feature} = {level}" for feature, level in columns)],
        rows,
        note,
    )


def missingness_table(inputs: ReportInputs) -> Table:
    """Share of rows missing each predictor, per site."""
    features = [f.name for f in inputs.spec.features]
    if not inputs.missingness:
        return Table(
            "Missing values per predictor and site",
            ["predictor", "per site"],
            [[name, "not released"] for name in features],
            "a deployment's sites release no per-predictor missingness with this version; "
            "lhsfed site check shows it at each site",
        )
    sites = list(inputs.missingness)
    rows = [[name] + [fmt(inputs.missingness[s].get(name)) for s in sites] for name in features]
    return Table(
        "Missing values per predictor and site",
        ["predictor", *sites],
        rows,
        "share of each site's rows (all splits) with the predictor missing, counted here on the "
        "simulated sites' rows; the model imputes the training mean and adds a missing flag",
    )


def _glm_interval(glm: dict[str, Any] | None, column: str) -> tuple[float, float] | None:
    """The Wald standard error glm.json holds for a coefficient (model=glm, DP off)."""
    if not glm or not glm.get("standard_errors"):
        return None
    index = glm["columns"].index(column)
    return glm["selected_coefficients"][index], glm["standard_errors"][index]


def coefficients_table(inputs: ReportInputs) -> Table:
    """TRIPOD+AI item 12: the full model. Linear: every coefficient and its odds ratio per SD."""
    checkpoint = inputs.checkpoint
    if checkpoint.spec.name != "logreg":
        return Table(
            "Model specification",
            ["item", "value"],
            [["architecture", f"{model_text(inputs)}: {checkpoint.spec.to_dict()}"]],
            "a non-linear model has no coefficient table; export it (lhsfed export) to inspect it",
        )
    state = checkpoint.model.state_dict()
    weights = state["head.0.weight"].double().numpy().ravel()
    bias = float(state["head.0.bias"].double().item())
    std = state["preprocess.std"].double().numpy()
    names = checkpoint.feature_names
    width = len(names)
    numeric = {n for f in inputs.spec.features if f.type == "numeric" for n in f.encoded_names()}
    rows = [["intercept", fmt(bias), "", "", ""]]
    z = 1.959963984540054
    for i, name in enumerate(names):
        # Per SD used to standardize for a numeric predictor; for an indicator, its presence
        # (0 -> 1 moves the standardized input by 1 / SD).
        per = 1.0 if name in numeric else 1.0 / float(std[i])
        interval = _glm_interval(inputs.glm, name)
        ci = (
            f"[{fmt(math.exp(per * (interval[0] - z * interval[1])))}, "
            f"{fmt(math.exp(per * (interval[0] + z * interval[1])))}]"
            if interval
            else "n/a"
        )
        unit = f"per {fmt(float(std[i]), 3)}" + (f" {_unit(inputs.spec, name)}" if name in numeric else "")
        rows.append(
            [
                name,
                fmt(weights[i]),
                fmt(math.exp(per * weights[i])),
                ci,
                unit if name in numeric else "present vs absent",
            ]
        )
    for i, name in enumerate(names):
        if abs(weights[width + i]) > 0:
            rows.append(
                [
                    f"{name} missing",
                    fmt(weights[width + i]),
                    fmt(math.exp(weights[width + i])),
                    "",
                    "missing vs observed",
                ]
            )
    note = (
        "coefficients act on standardized predictors ((x − mean) / SD, missing imputed at the mean; "
        "the SD the run standardized with: the sites' pooled SD, or under DP the spec's range / 4) "
        "plus a missing flag per predictor; odds ratio per that SD for a numeric predictor, for "
        "an indicator's presence vs absence otherwise"
    )
    note += (
        "; 95 % intervals: Wald, from the pooled penalized Hessian of the exact federated fit"
        if inputs.glm and inputs.glm.get("standard_errors")
        else "; no intervals: an SGD/DP-SGD fit releases no Hessian (model=glm with DP off gives them)"
    )
    return Table(
        "Model specification: coefficients",
        ["term", "coefficient", "odds ratio", "odds ratio 95 % CI", "odds ratio for"],
        rows,
        note,
    )


def _unit(spec: DatasetSpec, name: str) -> str:
    found = [f.unit for f in spec.features if name in f.encoded_names()]
    return found[0] if found and found[0] else ""


def heterogeneity_table(evaluation: dict[str, Any]) -> Table | None:
    """Random-effects summary of the site estimates (federation.modeler.heterogeneity)."""
    found = evaluation.get("heterogeneity")
    if not found:
        return None
    rows, reasons = [], []
    for key, label in (("auroc", "AUROC"), ("calibration_slope", "calibration slope")):
        result = found.get(key) or {}
        left = result.get("left_out") or {}
        if left:
            reasons.append(f"{label}: left out " + "; ".join(f"{s} ({why})" for s, why in left.items()))
        if result.get("summary") is None:
            rows.append(
                [label, str(result.get("k", 0)), f"not pooled: {result.get('why', '')}", "", "", "", ""]
            )
            continue
        pi = result.get("prediction_interval")
        rows.append(
            [
                label,
                str(result["k"]),
                fmt(result["summary"]),
                f"[{fmt(result['ci'][0])}, {fmt(result['ci'][1])}]",
                f"[{fmt(pi[0])}, {fmt(pi[1])}]" if pi else f"n/a ({result['prediction_interval_why']})",
                f"{100 * result['i2']:.0f} %",
                f"{fmt(result['tau2'], 4)} (Q p = {fmt(result['q_p_value'])})",
            ]
        )
    return Table(
        "Between-site heterogeneity: random-effects meta-analysis of the site estimates",
        ["measure", "sites", "summary", "95 % CI", "95 % prediction interval (a new site)", "I²",
         "τ² (pooling scale)"],
        rows,
        "DerSimonian–Laird; AUROC pooled on the logit scale; each site weighted by the standard "
        "error its own 95 % interval implies; prediction interval: t with k − 2 df"
        + ("; " + "; ".join(reasons) if reasons else ""),
    )  # fmt: skip


def _net_benefit_at(curve: dict[str, Any], threshold: float) -> tuple[str, str]:
    thresholds = np.asarray(curve["threshold"], dtype=float)
    i = int(np.argmin(np.abs(thresholds - threshold)))
    if abs(thresholds[i] - threshold) > 1e-9:
        return "not drawn", "not drawn"
    return fmt(curve["model"][i]), fmt(curve["treat_all"][i])


def decision_table(evaluation: dict[str, Any]) -> Table | None:
    """Net benefit of the model and of treat-all at a few thresholds, per site and pooled."""
    curves = evaluation.get("decision_curve")
    if not curves:
        return None
    named = {**curves.get("sites", {}), "all sites": curves["pooled"]}
    rows = []
    for name, curve in named.items():
        cells = []
        for t in DECISION_THRESHOLDS:
            model, everyone = _net_benefit_at(curve, t)
            cells.append(f"{model} / {everyone}")
        rows.append([name, *cells])
    return Table(
        "Decision curves: net benefit (model / treat all), each site against its own prevalence",
        ["site", *[f"t = {t:g}" for t in DECISION_THRESHOLDS]],
        rows,
        "net benefit = TP/n − FP/n · t/(1 − t); the model is useful at t where it beats both treat "
        "all and treat none (0); 'not drawn': under 1 % of the site's patients would be treated",
    )


def limitations_table(inputs: ReportInputs) -> Table:
    """What the data and the method limit, read from the run (beside the modeler's own words)."""
    evaluation = inputs.evaluation
    rows = []
    small = [s for s, m in evaluation["sites"].items() if (m.get("n") or 0) < 100]
    if small:
        rows.append(
            ["small test splits", f"{', '.join(small)}: under 100 test rows; their intervals are wide"]
        )
    if evaluation["privacy"].get("enabled"):
        rows.append(
            [
                "differential privacy",
                "the model's updates and every released figure carry noise; the ε each site spent "
                "is in the privacy table",
            ]
        )
    if str(evaluation.get("mode", "")).startswith("simulation"):
        rows.append(
            [
                "simulation",
                "the sites are simulated from files on one machine: figures here are scored on their "
                "exact rows",
            ]
        )
    rows.append(
        ["validation", "internal-external: each site's own held-out test rows; no temporal validation"]
    )
    given = (inputs.config.get("report") or {}).get("limitations")
    rows.append(["stated by the modeler", str(given) if given else "not stated (report.limitations)"])
    return Table("Limitations", ["limitation", "detail"], rows)


def missing_shares(sites: list[Any], spec: DatasetSpec) -> dict[str, dict[str, float]]:
    """Share of each site's rows (every split) missing each predictor (a simulation's rows)."""
    shares = {}
    for site in sites:
        parts = [site.x_train, site.x_val, site.x_test]
        x = np.concatenate([p for p in parts if p.ndim == 2 and p.shape[1] == site.x_train.shape[1]])
        start, found = 0, {}
        for feat in spec.features:
            width = len(feat.encoded_names())
            found[feat.name] = (
                float(np.isnan(x[:, start : start + width]).any(axis=1).mean()) if len(x) else math.nan
            )
            start += width
        shares[site.name] = found
    return shares


def glm_record(run_dir: Path) -> dict[str, Any] | None:
    from federation.core.run_layout import GLM_RECORD, read_json

    return read_json(Path(run_dir) / GLM_RECORD)
