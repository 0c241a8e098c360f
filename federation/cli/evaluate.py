"""``lhsfed evaluate RUN_DIR``: score the global model per site and pooled; write the reports.

Writes ``evaluation.json``, ``report.html`` and ``report.md`` into the run folder.
``--baselines`` also trains the local-only and pooled centralized models (simulation only).
A deployment run (``federation.mode=deployment`` in its ``.hydra/config.yaml``) is always
reported from the sites' own evaluation in ``metrics.jsonl``: the coordinator never scores
whatever copy of the data it may happen to hold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from federation.cli.arguments import at_least, open_unit_interval


def evaluate_to_folder(
    run_dir: Path,
    *,
    round_number: int | None = None,
    threshold: float | str = 0.5,
    resamples: int | None = None,
    baselines: bool = False,
    data_dir: Path | None = None,
    from_rounds: bool = False,
) -> dict:
    """Evaluate, then write evaluation.json and both reports; returns the evaluation.

    ``resamples``: bootstrap resamples for the AUROC CI (default: ``EvalOptions``' own, the
    count the sites' evaluation uses).
    """
    from federation.core import atomic
    from federation.core.run_layout import EVALUATION, HYDRA_CONFIG
    from federation.modeler.heterogeneity import heterogeneity
    from federation.modeler.report import write_reports
    from federation.modeler.run_evaluation import (
        EvalOptions,
        evaluate_run,
        evaluation_from_rounds,
        scorable_sites,
    )
    from federation.modeler.run_loader import (
        data_dir_of,
        federation_mode,
        load_saved_model,
        load_settings,
        read_round_records,
        require_run_dir,
        round_record,
        saved_model_path,
    )

    run_dir = require_run_dir(run_dir)
    options = EvalOptions(threshold=threshold, **({} if resamples is None else {"resamples": resamples}))
    settings, mode = load_settings(run_dir), federation_mode(run_dir)
    if mode == "deployment" or from_rounds:  # the rows never left the hospitals
        _refuse_row_options(mode, baselines=baselines, data_dir=data_dir)
        record = round_record(run_dir, round_number)
        evaluation = evaluation_from_rounds(run_dir, settings, record, options, mode=mode)
        predictions = None
    else:
        checkpoint = load_saved_model(saved_model_path(run_dir, round_number))
        sites, skipped = scorable_sites(checkpoint.dataset, data_dir or data_dir_of(run_dir))
        evaluation, predictions = evaluate_run(
            run_dir, settings, checkpoint, sites, options, baselines=baselines, skipped=skipped
        )
    # Between-site heterogeneity beside the site figures it summarises: one source for the report.
    evaluation["heterogeneity"] = heterogeneity(evaluation["sites"])
    atomic.write_json(run_dir / EVALUATION, evaluation)
    # The run's own choice (default): every round, so the report shows what came after it.
    records = [
        r for r in read_round_records(run_dir) if round_number is None or r.round <= evaluation["round"]
    ]
    write_reports(run_dir, evaluation, predictions, records, (run_dir / HYDRA_CONFIG).read_text())
    return evaluation


def _refuse_row_options(mode: str, *, baselines: bool, data_dir: Path | None) -> None:
    """Options that need the sites' rows, which only a simulation's coordinator has."""
    from federation.core.errors import ConfigError

    fix = (
        "this is a deployment run: its test rows stay at the hospitals"
        if mode == "deployment"
        else "drop --from-rounds"
    )
    if baselines:
        raise ConfigError(
            "--baselines trains on every site's rows, which only a simulation has; "
            f"{fix} (or drop --baselines)"
        )
    if data_dir is not None:
        raise ConfigError(
            f"--data-dir gives rows to score, but the report comes from the sites' "
            f"own evaluation in metrics.jsonl; {fix} (or drop --data-dir)"
        )


def _line(name: str, m: dict) -> str:
    from federation.modeler.report import fmt

    return f"  {name:<14} AUROC {fmt(m['auroc'])}  Brier {fmt(m['brier'])}  n={fmt(m['n'])}"


def run(args) -> int:
    from federation.core.input_files import refuse_file_as_folder

    refuse_file_as_folder(args.data_dir, option="--data-dir")
    evaluation = evaluate_to_folder(
        Path(args.run_dir),
        round_number=args.round,
        threshold=args.threshold,
        resamples=args.bootstrap,
        baselines=args.baselines,
        data_dir=args.data_dir,
        from_rounds=args.from_rounds,
    )
    from federation.modeler.site_view import shown_note, shown_sites

    print(f"global model, round {evaluation['round']} ({evaluation['mode']}):")
    shown = shown_sites(evaluation)  # at scale: the extreme sites, not a line per hospital
    sites = evaluation["sites"] if shown is None else {s: evaluation["sites"][s] for s in shown}
    for name, metrics in {**sites, "pooled": evaluation["pooled"]}.items():
        print(_line(name, metrics))
    if shown is not None:
        print(f"  ({shown_note(evaluation, shown)})")
    for name, reason in evaluation.get("skipped_sites", {}).items():  # its file was refused
        print(f"  {name:<14} skipped: {reason}")
    if "baselines" in evaluation:
        benefit = evaluation["baselines"]["benefit_auroc"]
        print(
            f"  benefit over local-only: AUROC {benefit['mean']:+.3f} (mean of sites), "
            f"{benefit['weighted_mean']:+.3f} (weighted by test rows)"
        )
    print(f"wrote evaluation.json, report.html and report.md in {args.run_dir}")
    return 0


def add_run_arguments(parser) -> None:
    """RUN_DIR and --round: which run's global model a modeler command works on."""
    parser.add_argument("run_dir", help="run folder written by lhsfed-train")
    parser.add_argument(
        "--round",
        type=int,
        default=None,
        help="a round's checkpoint (default: the round the run handed out, model.pt)",
    )


def _threshold(text: str) -> float | str:
    """A risk in (0, 1), or 'suggest' (the pooled validation prevalence)."""
    if text == "suggest":
        return text
    try:
        return open_unit_interval(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err}; or give --threshold suggest") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a run's global model per site")
    add_run_arguments(parser)
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=0.5,
        help="risk at or above which a patient is called positive, in (0, 1), or 'suggest': "
        "the pooled validation split's prevalence (default 0.5)",
    )
    parser.add_argument(
        "--bootstrap",
        type=at_least(1),
        default=None,
        help="bootstrap resamples for the AUROC CI, at least 1 (default: the "
        "count the sites' own evaluation uses)",
    )
    parser.add_argument(
        "--baselines", action="store_true", help="also train local-only and pooled models (simulation only)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder of the sites' files (default: the run's federation.data_dir)",
    )
    parser.add_argument(
        "--from-rounds",
        action="store_true",
        help="report the metrics the sites sent in the run's Flower evaluate round "
        "(metrics.jsonl) instead of scoring rows here (always so for a "
        "deployment run)",
    )
    parser.set_defaults(func=run)
