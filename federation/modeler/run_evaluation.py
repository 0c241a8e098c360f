"""Evaluate a run's global model (and optionally the baselines) on every site's test split.

The default model is the round the run selected by its validation rows (``model.pt``); the
test rows are scored here and never feed back into any choice.

Simulation path: the coordinator holds the embedded (or ``federation.data_dir``) site files,
so it predicts every site's held-out rows itself; pooled metrics use all rows together.
Deployment path (:func:`evaluation_from_rounds`): the numbers the sites sent in a round.
The result is the plain document written as ``evaluation.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from federation.core.data import SiteData, load_site, site_file
from federation.core.dataspec import DatasetSpec
from federation.core.decision_curve import rates_at
from federation.core.errors import DataError
from federation.core.estimable import withhold_too_few
from federation.core.metric_intervals import MEASURES, risk_metrics_with_intervals
from federation.core.metrics import BOOTSTRAP_RESAMPLES, METRIC_KEYS
from federation.core.model import predict_risk
from federation.core.records import Evaluation, RoundRecord, read_round_records
from federation.core.run_layout import METRICS, json_safe
from federation.core.settings import RunSettings
from federation.modeler import baselines as baseline_models
from federation.modeler import usefulness
from federation.modeler.paired_bootstrap import auroc_difference_ci
from federation.modeler.run_loader import SavedModel, read_summary, search_privacy

SCORED_HERE = "simulation: scored here on the sites' test rows"
POOLED = "pooled"
Predictions = dict[str, tuple[np.ndarray, np.ndarray]]  # site -> (labels, risks)


SUGGEST = "suggest"


@dataclass(frozen=True)
class EvalOptions:
    """``threshold``: a risk in (0, 1), or ``"suggest"``: the pooled validation prevalence."""

    threshold: float | str = 0.5
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = 0

    def resolved(self, validation_prevalence: float | None) -> EvalOptions:
        """The options with a number for ``threshold`` (a suggestion resolved)."""
        if self.threshold != SUGGEST:
            return self
        if validation_prevalence is None or not 0 < validation_prevalence < 1:
            raise DataError(
                "--threshold suggest uses the validation split's prevalence, but no site released "
                "one; give a number, e.g. --threshold 0.2"
            )
        return replace(self, threshold=round(float(validation_prevalence), 2))


def threshold_source(options: EvalOptions) -> str:
    return (
        "suggested: the pooled validation split's prevalence (rounded to the 1/100 grid)"
        if options.threshold == SUGGEST
        else "chosen by the modeler (--threshold; default 0.5)"
    )


def scorable_sites(
    dataset: DatasetSpec, data_dir: Path | None = None
) -> tuple[list[SiteData], dict[str, str]]:
    """The sites whose files load, and the one-line reason for each other one: a site whose
    file was refused in the run (it sat out) is left out of the report, not a crash of it."""
    sites, skipped = [], {}
    for name in dataset.site_names:
        try:
            sites.append(load_site(site_file(dataset, name, data_dir), dataset, name))
        except DataError as err:
            skipped[name] = str(err)
    if not sites:
        raise DataError("no site's file could be read: " + "; ".join(skipped.values()))
    return sites, skipped


def predict_sites(model, sites: list[SiteData]) -> Predictions:
    return {s.name: (s.y_test.astype(int), predict_risk(model, s.x_test)) for s in sites}


def with_pooled(predictions: Predictions) -> Predictions:
    """Add the 'pooled' entry: every site's test rows together."""
    y = np.concatenate([y for y, _ in predictions.values()])
    p = np.concatenate([p for _, p in predictions.values()])
    return {**predictions, POOLED: (y, p)}


def score(predictions: Predictions, options: EvalOptions) -> dict[str, dict[str, Any]]:
    """Every measure with its 95% CI (one bootstrap), too-few measures None with their reason."""
    return {
        name: risk_metrics_with_intervals(
            y, p, threshold=options.threshold, resamples=options.resamples, seed=options.seed
        )
        for name, (y, p) in predictions.items()
    }


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) else a - b


def site_means(metrics: dict[str, dict[str, Any]], key: str = "auroc") -> dict[str, float]:
    """Plain mean over sites, and the mean weighted by each site's test rows (NaN/None skipped)."""
    pairs = [
        (m[key], m["n"])
        for name, m in metrics.items()
        if name != POOLED and m.get(key) is not None and not np.isnan(m[key])
    ]
    if not pairs:
        return {"mean": float("nan"), "weighted_mean": float("nan")}
    values, weights = np.array(pairs, dtype=float).T
    return {"mean": float(values.mean()), "weighted_mean": float(np.average(values, weights=weights))}


def baseline_section(
    settings: RunSettings,
    checkpoint: SavedModel,
    sites: list[SiteData],
    global_auroc: dict[str, float],
    options: EvalOptions,
    records: list[RoundRecord] | None = None,
    global_predictions: Predictions | None = None,
) -> dict[str, Any]:
    """Local-only and pooled models scored on the same test rows, and the federation's benefit;
    both trained as the federation did up to the round evaluated (``baselines.match``, from
    the run's round ``records``), which ``trained`` records. With the global model's
    ``global_predictions`` (site and pooled), each benefit gets its paired-bootstrap CI."""
    matched = baseline_models.match(settings, records or [], checkpoint.round)
    local = baseline_models.local_only(settings, checkpoint.spec, sites, matched)
    own_model = {s.name: (s.y_test.astype(int), predict_risk(local[s.name].model, s.x_test)) for s in sites}
    own_model = with_pooled(own_model)
    local_scores = score(own_model, options)  # pooled: each row by its site's model
    central = baseline_models.pooled(settings, checkpoint.spec, sites, matched)
    pooled_scores = score(with_pooled(predict_sites(central.model, sites)), options)
    benefit = {  # None where either AUROC is too few to estimate
        s.name: {
            "auroc": _difference(global_auroc[s.name], local_scores[s.name]["auroc"]),
            "n": len(s.y_test),
        }
        for s in sites
    }
    benefit_auroc = {
        **{name: b["auroc"] for name, b in benefit.items()},
        **site_means(benefit),
        POOLED: _difference(global_auroc[POOLED], local_scores[POOLED]["auroc"]),
    }
    intervals = _benefit_intervals(global_predictions, own_model, options)
    return {
        "local_only": {
            "sites": local_scores,
            "epsilon": {name: b.epsilon for name, b in local.items()},
            "mean_auroc": site_means(local_scores),
        },
        "pooled_centralized": {
            "sites": pooled_scores,
            "epsilon": central.epsilon,
            "mean_auroc": site_means(pooled_scores),
        },
        "benefit_auroc": benefit_auroc,
        # no interval around a difference one of whose AUROCs is too few to estimate
        "benefit_auroc_ci": {
            k: v if benefit_auroc.get(k) is not None else None for k, v in intervals.items()
        },
        "epochs": matched.rounds * settings.train.local_epochs,
        "trained": matched.to_json(settings),
    }


def _benefit_intervals(
    global_predictions: Predictions | None, local_predictions: Predictions, options: EvalOptions
) -> dict[str, list[float] | None]:
    """Per site and pooled: the 95 % paired-bootstrap interval of global − local-only AUROC."""
    if not global_predictions:
        return {}
    return {
        name: auroc_difference_ci(
            y, global_predictions[name][1], p_local, resamples=options.resamples, seed=options.seed
        )
        for name, (y, p_local) in local_predictions.items()
        if name in global_predictions
    }


def _privacy(settings: RunSettings, run_dir: Path) -> dict[str, Any]:
    spent = (read_summary(run_dir).get("privacy") or {}).get("sites") or {}
    return {
        "enabled": settings.privacy.enabled,
        "target_epsilon": settings.privacy.target_epsilon,
        "delta": settings.privacy.delta,
        "epsilon": {site: (v or {}).get("epsilon") for site, v in spent.items()},
        "site_epsilon": {site: (v or {}).get("site_epsilon") for site, v in spent.items()},
        # what stopping early left of the planned ε (older runs: absent, None)
        "unspent_epsilon": {site: (v or {}).get("unspent_epsilon") for site, v in spent.items()},
        # a sweep's trial: what the whole search spent per site, and the site total after it
        "search": search_privacy(run_dir),
    }


def _header(
    run_dir: Path, round_number: int, mode: str, options: EvalOptions, source: str = ""
) -> dict[str, Any]:
    """What was evaluated; ``selection`` is the run's own (summary.json), None before it existed."""
    return {
        "run_dir": str(Path(run_dir).resolve()),
        "round": round_number,
        "mode": mode,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threshold": options.threshold,
        "threshold_source": source or threshold_source(options),
        "bootstrap_resamples": options.resamples,
        "selection": read_summary(run_dir).get("selection"),
        "run_test": run_test(run_dir),
    }


def run_test(run_dir: Path) -> dict[str, Any] | None:
    """The run's own pooled test AUROC of the round it handed out, as summary.json holds it (what
    lhsfed-train printed last and MLflow logs as ``selected/test/pooled/auroc``); None before
    summary.json existed. Under DP it is the sites' noisy release, not the exact figure a
    simulation's evaluation scores here."""
    summary = read_summary(run_dir)
    pooled = (summary.get("metrics") or {}).get("pooled") or {}
    if not summary or "auroc" not in pooled:
        return None
    return {
        "round": (summary.get("selection") or {}).get("round"),
        "auroc": pooled.get("auroc"),
        "auroc_ci": pooled.get("auroc_ci"),
        "dp": bool((summary.get("privacy") or {}).get("enabled")),
    }


def evaluate_run(
    run_dir: Path,
    settings: RunSettings,
    checkpoint: SavedModel,
    sites: list[SiteData],
    options: EvalOptions,
    *,
    baselines: bool = False,
    skipped: dict[str, str] | None = None,
) -> tuple[dict[str, Any], Predictions]:
    """The ``evaluation.json`` document and the predictions behind it (for the plots);
    ``skipped``: sites left out (their file was refused) and why."""
    source = threshold_source(options)
    options = options.resolved(_validation_prevalence_of_rows(sites))
    predictions = with_pooled(predict_sites(checkpoint.model, sites))
    metrics = score(predictions, options)
    scored = Evaluation(sites={s.name: metrics[s.name] for s in sites}, pooled=metrics[POOLED])
    document: dict[str, Any] = {
        **_header(run_dir, checkpoint.round, SCORED_HERE, options, source),
        **scored.to_json(),
        "mean_auroc": site_means(metrics),
        **_usefulness_from_rows(sites, predictions, checkpoint.dataset, options),
        "data": {
            s.name: {"n_train": len(s.y_train), "n_validation": len(s.y_val), "n_test": len(s.y_test)}
            for s in sites
        },
        "privacy": _privacy(settings, run_dir),
        **({"skipped_sites": dict(skipped)} if skipped else {}),
    }
    if baselines:
        global_auroc = {name: m["auroc"] for name, m in metrics.items()}
        records = read_round_records(run_dir)
        document["baselines"] = baseline_section(
            settings, checkpoint, sites, global_auroc, options, records, global_predictions=predictions
        )
    document["headline"] = usefulness.headline(json_safe(document))
    return json_safe(document), predictions


def _validation_prevalence_of_rows(sites: list[SiteData]) -> float | None:
    n = sum(len(s.y_val) for s in sites)
    return sum(float(s.y_val.sum()) for s in sites) / n if n else None


def _usefulness_from_rows(sites, predictions: Predictions, spec: DatasetSpec, options: EvalOptions) -> dict:
    """Subgroups, decision curves and quantile calibration of the rows scored here."""
    subgroups = usefulness.subgroups_from_rows(sites, predictions, spec, options.threshold, options.seed)
    return {
        **({"subgroups": subgroups} if subgroups else {}),
        "decision_curve": usefulness.curves(usefulness.histograms_of(predictions)),
        "calibration_quantile": usefulness.calibration_from_rows(predictions),
    }


def _round_metrics(site: dict[str, Any]) -> dict[str, Any]:
    """A Flower evaluate round's site metrics in evaluation.json's shape (absent ones null)."""
    return {
        **{key: None for key in METRIC_KEYS},
        "n": site.get("n_test"),
        **{k: site[k] for k in METRIC_KEYS if k in site},
    }


def from_rounds_mode(mode: str, round_number: int) -> str:
    """evaluation.json's ``mode`` when the numbers are the sites' own evaluation."""
    return f"{mode}: the sites' own evaluation, {METRICS} round {round_number}"


def _validation_prevalence_of_record(record: RoundRecord) -> float | None:
    sites = record.validation.sites.values()
    n = sum(m.get("n_test") or 0 for m in sites)
    return sum(m.get("n_positive") or 0 for m in sites) / n if n else None


def _released_histograms(evaluation: Evaluation) -> dict[str, tuple[list, list]]:
    return {
        name: (m["score_hist_pos"], m["score_hist_neg"])
        for name, m in evaluation.sites.items()
        if m.get("score_hist_pos") is not None
    }


def _at_threshold(
    metrics: dict[str, Any], histograms, threshold: float, *, own_pair: bool = True
) -> dict[str, Any]:
    """Sensitivity/specificity at the report's threshold from released histograms (exact on
    the 1/100 grid); a site's own pair, at 0.5, is kept at 0.5 (``own_pair``)."""
    if histograms is None or (own_pair and threshold == 0.5):
        return metrics
    sens, spec = rates_at(*histograms, threshold)
    return {**metrics, "threshold": float(threshold), "sensitivity": sens, "specificity": spec}


def _usefulness_from_record(record: RoundRecord, threshold: float, spec: DatasetSpec | None = None) -> dict:
    histograms = _released_histograms(record.evaluate)
    released = {n: m.get("subgroups") or {} for n, m in record.evaluate.sites.items()}
    if spec is None or not spec.subgroup_features:  # what the sites sent is all there is
        released = {n: found for n, found in released.items() if found}
    subgroups = usefulness.subgroups_from_sites(released, threshold, spec)
    if not histograms:  # a run from before the histograms were kept
        return {"subgroups": subgroups} if subgroups else {}
    return {
        **({"subgroups": subgroups} if subgroups else {}),
        "decision_curve": usefulness.curves(histograms),
        "calibration_quantile": usefulness.calibration_from_histograms(histograms),
    }


def evaluation_from_rounds(
    run_dir: Path,
    settings: RunSettings,
    record: RoundRecord,
    options: EvalOptions,
    *,
    mode: str = "deployment",
) -> dict[str, Any]:
    """The sites scored the global model themselves in the run's evaluate round (deployment).

    Each site sent every metric of its own rows (``ClientApp.evaluate``); pooled, only
    AUROC/AUPRC (from the summed score histograms), Brier and (from the histograms)
    sensitivity/specificity at the threshold are known, the rest is null.
    """
    source = threshold_source(options)
    options = options.resolved(_validation_prevalence_of_record(record))
    evaluation, histograms = record.evaluate, _released_histograms(record.evaluate)
    noisy = any(m.get("release_noise_std") for m in evaluation.sites.values())
    pooled = {**evaluation.pooled, "n_positive": _pooled_positives(evaluation.sites.values())}
    reported = Evaluation(
        sites={
            name: _deployment_entry(
                _at_threshold(_round_metrics(m), histograms.get(name), options.threshold), m, noisy
            )
            for name, m in sorted(evaluation.sites.items())
        },
        pooled=_deployment_entry(
            _at_threshold(_round_metrics(pooled), _summed(histograms), options.threshold, own_pair=False),
            pooled,
            noisy,
        ),
    )
    document = json_safe(
        {
            **_header(run_dir, record.round, from_rounds_mode(mode, record.round), options, source),
            **reported.to_json(),
            "mean_auroc": site_means(reported.sites),
            **_usefulness_from_record(record, options.threshold, settings.data),
            "data": {
                name: {
                    "n_train": (record.train.get(name) or {}).get("num_examples"),
                    "n_test": m.get("n_test"),
                }
                for name, m in sorted(evaluation.sites.items())
            },
            "privacy": _privacy(settings, run_dir),
        }
    )
    return {**document, "headline": usefulness.headline(document)}


NO_INTERVAL = {
    "reason": "not_released",
    "text": "no CI: a site releases an interval for its AUROC only; the others' would need its rows",
}


def _pooled_positives(sites) -> float | None:
    found = [m.get("n_positive") for m in sites]
    return None if not found or any(v is None for v in found) else sum(found)


def _deployment_entry(entry: dict[str, Any], released: dict[str, Any], noisy: bool) -> dict[str, Any]:
    """A site's (or the pooled) released metrics with each measure's ``_ci`` (the AUROC's as
    the site, or the pooled release, gave it; the others None, ``ci_unavailable`` saying why)
    and every measure its (under DP: noisy) counts are too few for withheld."""
    low, high = entry.get("auroc_ci_low"), entry.get("auroc_ci_high")
    interval = [low, high] if low is not None and high is not None else released.get("auroc_ci")
    entry = {**entry, **{f"{m}_ci": None for m in MEASURES}, "auroc_ci": interval}
    entry["ci_unavailable"] = {
        m: NO_INTERVAL for m in MEASURES if entry[f"{m}_ci"] is None and entry.get(m) is not None
    }
    if interval is not None:
        entry["auroc_ci_low"], entry["auroc_ci_high"] = interval
    n, events = entry.get("n"), entry.get("n_positive")
    non_events = None if n is None or events is None else n - events
    return withhold_too_few(entry, events, non_events, noisy=noisy)


def _summed(histograms: dict[str, tuple[list, list]]):
    if not histograms:
        return None
    return tuple(np.sum([h[i] for h in histograms.values()], axis=0) for i in (0, 1))
