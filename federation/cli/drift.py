"""``lhsfed drift TASK``: ask every site whether its data has drifted since the champion.

Each site compares its current rows with the reference statistics it took itself when it
trained the champion's run and returns only per-feature SMD, missing-rate change and PSI
(client/drift.py). A table goes to the console, ``drift.json`` to ``--out`` and to the
champion's MLflow run. Needs the coordinator's ``registry`` extra (MLflow, imported here).
"""

from __future__ import annotations

import argparse

THRESHOLDS = (("smd", "|SMD|", 0.2), ("psi", "PSI", 0.25), ("missing", "|missing-rate change|", 0.10))


def _number(value) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _rows(entry: dict) -> list[tuple[str, dict]]:
    """A flagged site's every feature; an unflagged site's one row of its largest scores."""
    if entry["flagged"]:
        return list(entry["features"].items())
    scored = [f for f in entry["features"].values() if not f.get("withheld")]
    withheld = len(entry["features"]) - len(scored)

    def largest(key: str) -> float | None:
        return max((f[key] for f in scored), key=abs, default=None)

    label = f"(largest of {len(scored)} features{f', {withheld} withheld' if withheld else ''})"
    summary = {"smd": largest("smd"), "missing_change": largest("missing_change"), "psi": largest("psi")}
    return [(label, summary | {"flagged": False})]


def show(record: dict) -> None:
    """Site, feature, SMD, Δmissing, PSI, flag: every feature of a flagged site, one row of
    the largest scores of any other; then a line per site and each refusal."""
    from rich.console import Console
    from rich.table import Table

    t = record["thresholds"]
    table = Table(
        title=f"drift vs champion version {record['champion']['version']} "
        f"(flag: |SMD| > {t['smd']:g}, PSI > {t['psi']:g}, |Δmissing| > {t['missing']:g})"
    )
    for column in ("site", "feature", "SMD", "Δmissing", "PSI", "flag"):
        table.add_column(column, justify="left" if column in ("site", "feature", "flag") else "right")
    for site, entry in record["sites"].items():
        for feature, f in _rows(entry):
            flag = "withheld (k)" if f.get("withheld") else ("[bold red]DRIFT[/]" if f["flagged"] else "")
            psi = "-" if f["psi"] is None else f"{f['psi']:.3f}"
            table.add_row(site, feature, _number(f["smd"]), _number(f["missing_change"]), psi, flag)
    console = Console()
    console.print(table)
    for site, entry in record["sites"].items():
        flagged = [name for name, f in entry["features"].items() if f["flagged"]]
        console.print(f"{site}: {'DRIFT in ' + ', '.join(flagged) if flagged else 'no drift flagged'}")
    for site, reason in record["refused"].items():
        console.print(f"{site}: refused ({reason})")


def _add_options(parser: argparse.ArgumentParser, default_uri: str) -> None:
    parser.add_argument(
        "--registry-uri",
        default=default_uri,
        help=f"the MLflow tracking/registry URI (default {default_uri}, relative to this folder)",
    )
    for key, label, default in THRESHOLDS:
        parser.add_argument(
            f"--{key}",
            type=_threshold,
            default=default,
            help=f"flag a feature when {label} > this (default {default})",
        )
    parser.add_argument(
        "--out", help="output folder (default $LHSFED_RUNS_ROOT/drift/TASK-<UTC time>, else under outputs/)"
    )


def _options_and_overrides(args) -> tuple[argparse.Namespace, list[str]]:
    """Options may follow TASK among the overrides (argparse ends ``TASK OVERRIDES...`` at
    the first option): parse them out of the rest; anything else starting with - is unknown."""
    from federation.core.errors import ConfigError

    again = argparse.ArgumentParser(prog="lhsfed drift", add_help=False, exit_on_error=False)
    _add_options(again, args.registry_uri)
    given = ("registry_uri", "out", *(key for key, _, _ in THRESHOLDS))
    again.set_defaults(**{key: getattr(args, key) for key in given})
    try:
        options, overrides = again.parse_known_args(args.overrides)
    except argparse.ArgumentError as err:
        raise ConfigError(f"{err}; see lhsfed drift --help") from None
    unknown = [item for item in overrides if item.startswith("-")]
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]}; see lhsfed drift --help")
    return options, overrides


def run(args) -> int:
    from pathlib import Path

    from federation.cli.registry import _quiet_client
    from federation.coordinator.drift import check_drift

    options, overrides = _options_and_overrides(args)
    _quiet_client()
    thresholds = {key: getattr(options, key) for key, _, _ in THRESHOLDS}
    out = Path(options.out) if options.out else None
    record, path = check_drift(
        args.task, uri=options.registry_uri, thresholds=thresholds, out=out, overrides=overrides
    )
    show(record)
    print(f"wrote {path} (also logged to the champion's MLflow run, artifact drift/drift.json)")
    return 0


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def register(subparsers) -> None:
    from federation.coordinator.registry import DEFAULT_URI  # standard library only at import

    parser = subparsers.add_parser(
        "drift", help="per-site, per-feature drift of the sites' data since the champion was trained"
    )
    parser.add_argument("task", help="the registered task, e.g. uci_heart-num")
    _add_options(parser, DEFAULT_URI)
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        metavar="OVERRIDES",
        help="lhsfed-train overrides of the run, e.g. federation.runtime=inprocess federation.data_dir=DIR",
    )
    parser.set_defaults(func=run)
