"""``lhsfed site check``: hospital IT checks its data file before the node joins (offline).

The report (table, warnings, failures, then the one-line verdict) goes to stdout; a progress
bar on large files goes to stderr, and the verdict is stderr's last line too (printed once
when both are the same terminal). Imports stay light (no torch): the check
runs in bounded memory on files of any size. The data layer (pandas, rich) is imported by
the handler, so ``lhsfed --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from federation.core.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from federation.core.dataspec import DatasetSpec

DATA_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"
LARGE_FILE = 32 << 20  # bytes: a progress bar even when stderr is not a terminal
TERMINAL_BAR = 1 << 20  # bytes: on a terminal, a bar for anything bigger than this


def load_dataset_spec(name: str) -> DatasetSpec:
    """The dataset spec ``configs/data/NAME.yaml`` (what ``lhsfed-train data=NAME`` uses)."""
    from federation.core.dataspec import load_spec_file

    path = DATA_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in DATA_CONFIGS.glob("*.yaml"))
        raise ConfigError(f"dataset {name!r} is unknown; choose one of {known}")
    return load_spec_file(path)


def _table(report, spec: DatasetSpec, site: str | None) -> Table:
    from rich.table import Table

    from federation.core.dataspec import value_text

    title = f"{site or report.path.name}: {report.rows} rows, labels {report.label_counts or '-'}"
    table = Table(title=title)
    for heading in ("column", "missing", "out of range", "unknown levels", "valid range / levels"):
        table.add_column(heading, justify="left" if heading.startswith(("column", "valid")) else "right")
    features = {f.name: f for f in spec.features}
    for col in report.columns:
        feat = features[col.name]
        allowed = (
            f"{feat.min:g}..{feat.max:g} {feat.unit or ''}"
            if feat.min is not None
            else ",".join(value_text(v) for v in feat.levels) or feat.type
        )
        table.add_row(col.name, str(col.missing), str(col.out_of_range), str(col.unknown_levels), allowed)
    return table


@contextmanager
def _progress_bar(path: Path, stderr: Console) -> Iterator:
    """A byte progress bar on stderr for a large file (or a terminal), removed when done."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    size = path.stat().st_size if path.is_file() else 0
    if size < LARGE_FILE and not (stderr.is_terminal and size > TERMINAL_BAR):
        yield None
        return
    columns = (f"checking {path.name}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as bar:
        task = bar.add_task("check", total=size)
        yield lambda n: bar.advance(task, n)


def _verdict(report, spec: DatasetSpec, path: Path) -> str:
    counts = f"({len(report.failures)} failures, {len(report.warnings)} warnings)"
    if report.ok:
        return f"PASS: {path} matches dataset {spec.name!r} {counts}"
    first = report.failures[0].removeprefix(f"{path}: ")
    return f"FAIL: {path} does not match dataset {spec.name!r} {counts}; first: {first}"


def run(args) -> int:
    from rich.console import Console

    from client.site_check import check_site_file
    from federation.core.data import site_file
    from federation.core.dataspec import load_spec_file

    spec = load_spec_file(args.spec) if args.spec is not None else load_dataset_spec(args.dataset)
    if args.data is None and args.site is None:
        raise ConfigError("give --data PATH (the site's file), or --site NAME for the embedded copy")
    path = args.data if args.data is not None else site_file(spec, args.site)
    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    with _progress_bar(path, stderr) as progress:
        report = check_site_file(path, spec, progress=progress)
    console = Console(stderr=False, width=120)
    if report.columns:
        console.print(_table(report, spec, args.site))
    for line in report.warnings:
        console.print(f"[yellow]warning[/yellow] {line}", highlight=False, soft_wrap=True)
    for line in report.failures:
        console.print(f"[red]FAIL[/red] {line}", highlight=False, soft_wrap=True)
    verdict = _verdict(report, spec, path)
    console.print(verdict, markup=False, highlight=False, soft_wrap=True)
    if not (console.is_terminal and stderr.is_terminal):  # once on a terminal; else on both
        stderr.print(verdict, markup=False)
    return 0 if report.ok else 1


def ledger_lines(ledger_path: Path, key: Path, site: str, node_state: Path | None) -> list[str]:
    """The site's privacy ledger, read and verified as its node reads it (hash chain, node
    key, node state): one line per run (its rows, DP-SGD steps, releases, ε of the run), then
    the lifetime ε every run together has spent, which the site's cap bounds."""
    from client.ledger import SiteLedger
    from client.node_identity import NodeIdentity

    if not Path(ledger_path).is_file():
        raise ConfigError(f"--ledger {ledger_path}: file not found (LHSFED_LEDGER_PATH of the node)")
    identity = NodeIdentity.of_key(key, site=site, state_path=node_state)
    entries = SiteLedger(ledger_path, identity=identity, site=site).entries()
    runs: dict[str, list] = {}
    for entry in entries:
        runs.setdefault(entry.run, []).append(entry)
    lines = [f"{'rows':>5} {'steps':>6} {'releases':>8} {'ε run':>7}  run"]
    for run, rows in runs.items():
        steps = sum(e.steps for e in rows if not e.is_release)
        releases = sum(1 for e in rows if e.is_release)
        lines.append(f"{len(rows):>5} {steps:>6} {releases:>8} {rows[-1].epsilon_run:>7.3f}  {run}")
    delta = f" at δ={entries[-1].delta:g}" if entries else ""
    total = entries[-1].epsilon_total if entries else 0.0
    lines.append(f"lifetime ε {total:.3f}{delta}: {len(entries)} rows, {len(runs)} runs, chain verified")
    return lines


def run_ledger(args) -> int:
    print("\n".join(ledger_lines(args.ledger, args.key, args.site, args.node_state)))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("site", help="hospital-side checks")
    sub = parser.add_subparsers(dest="site_command", required=True)
    check = sub.add_parser("check", help="validate a site's data file against the dataset spec")
    check.add_argument("--data", type=Path, default=None, help="the site's data file")
    check.add_argument("--site", default=None, help="site name (default file: the embedded copy)")
    check.add_argument("--dataset", default="uci_heart", help="configs/data/NAME.yaml")
    check.add_argument(
        "--spec",
        type=Path,
        default=None,
        help="the site's own dataset spec file (node config spec-path); overrides --dataset",
    )
    check.set_defaults(func=run)
    ledger = sub.add_parser("ledger", help="the site's privacy ledger: ε per run and over every run")
    ledger.add_argument("--ledger", type=Path, required=True, help="the ledger file (LHSFED_LEDGER_PATH)")
    ledger.add_argument("--key", type=Path, required=True, help="the node's key (LHSFED_NODE_KEY)")
    ledger.add_argument("--site", required=True, help="the site's name (LHSFED_SITE_NAME)")
    ledger.add_argument(
        "--node-state",
        type=Path,
        default=None,
        help="the node state file (LHSFED_NODE_STATE; default beside the key)",
    )
    ledger.set_defaults(func=run_ledger)
