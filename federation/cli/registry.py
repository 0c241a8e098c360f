"""``lhsfed registry list|show TASK``: the registered tasks, their versions, aliases and lineage.

Reads the MLflow registry that campaigns write (``lhsfed-train campaign=NAME``); ``mlflow ui
--backend-store-uri URI`` shows the same to modelers (docs/learning-loop.md). Needs the
coordinator's ``registry`` extra; MLflow is imported in the handler.
"""

from __future__ import annotations

import os


def _quiet_client() -> None:
    """MLflow installed (else the extra to install), and one attempt with a short wait: a
    registry that does not answer is one line, not minutes of retries."""
    import importlib.util

    from federation.core.errors import ConfigError

    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "lhsfed registry reads MLflow, which is not installed here: "
            "pip install 'lhs-federation[registry]'"
        )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def run_list(args) -> int:
    from federation.coordinator.registry import list_tasks

    _quiet_client()
    tasks = list_tasks(args.uri)
    if not tasks:
        print(f"no registered task in {args.uri} (a campaign registers one: lhsfed-train campaign=NAME)")
    for task in tasks:
        aliases = ", ".join(f"{a}=v{v}" for a, v in task["aliases"].items()) or "no alias"
        print(f"{task['task']}: versions {', '.join(map(str, task['versions'])) or 'none'}; {aliases}")
    return 0


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _per_site(values: dict) -> str:
    return ", ".join(f"{site} {value}" for site, value in values.items()) or "-"


def run_show(args) -> int:
    from federation.coordinator.registry import show_task

    _quiet_client()
    versions = show_task(args.uri, args.task)
    print(f"task {args.task} ({args.uri}): {len(versions)} version(s)")
    for v in versions:
        m = v["metrics"]
        print(
            f"  version {v['version']:<3} {','.join(v['aliases']) or '-':<11} "
            f"parent {v['parent_version']:<5} "
            f"campaign {v['campaign']}  round {v['selected_round']}  "
            f"validation AUROC {_number(m.get('validation/pooled/auroc'))}  "
            f"test AUROC {_number(m.get('test/pooled/auroc'))}  ε {_per_site(v['epsilon'])}  "
            # the site's ledger after the run, every campaign (none on versions logged before)
            f"site total ε {_per_site(v.get('site_epsilon') or {})}  run {v['run_id']}"
        )
        if v.get("search"):
            s = v["search"]
            print(
                f"      search of {s['trials']} trials: ε {_per_site(s['epsilon'])}; site total ε "
                f"after it {_per_site(s['site_epsilon'])} ({s['summary']})"
            )
    return 0


def register(subparsers) -> None:
    from federation.coordinator.registry import DEFAULT_URI  # standard library only at import

    parser = subparsers.add_parser("registry", help="registered models: versions, aliases, lineage, ε")
    commands = parser.add_subparsers(dest="registry_command", required=True)
    for name, func, help_text in (
        ("list", run_list, "every registered task with its versions and aliases"),
        ("show", run_show, "one task's versions: aliases, parent, metrics, ε per site"),
    ):
        sub = commands.add_parser(name, help=help_text)
        if name == "show":
            sub.add_argument("task", help="the task: dataset spec name and label, e.g. uci_heart-num")
        sub.add_argument(
            "--uri",
            default=DEFAULT_URI,
            help=f"the MLflow tracking/registry URI (default {DEFAULT_URI}, relative to this folder)",
        )
        sub.set_defaults(func=func)
