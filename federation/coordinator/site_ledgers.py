"""Where the simulated sites keep their privacy ledgers: one per task, across campaigns.

A deployed hospital's ledger lives at its ``ledger-path`` and persists across every run it
joins, so its ε is one lifetime number. In simulation the launcher plays the hospitals, and
the same simulated patients take part in every campaign of a task: if each run started from
empty ledgers, a warm-started campaign (or a tuning sweep) would show a "site total" that
forgot the ε its patients already spent, and the site's cap would bound nothing across
campaigns. So by default every simulated run of a task (its dataset and label, the registry's
task name) spends from ``<federation.ledger_dir>/<task>/`` (``<site>.sqlite``, the node key and
state beside it), as deployed sites do, and the cap holds across campaigns.

``federation.fresh_ledgers=true`` gives a throwaway experiment empty ledgers of its own (the
run folder's ``ledgers/``; every trial of a sweep shares ``<sweep>/ledgers``), and the console
says that earlier campaigns' ε is not counted. ``LHSFED_LEDGER_DIR`` (the simulated sites'
own policy, like every ``LHSFED_*`` variable) names the folder outright; a resumed run keeps
the folder its ``site_policy.json`` recorded, wherever it is resumed from.
"""

from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from client.site_policy import LEDGER_DIR_ENV
from federation.coordinator.exported_env import exported as exported_variable
from federation.core.errors import ConfigError
from federation.core.run_layout import LEDGERS, SITE_POLICY, read_json

DEFAULT_LEDGER_DIR = Path("outputs") / LEDGERS  # beside outputs/runs and outputs/multirun
FRESH_LINE = "fresh ledgers: ε of earlier campaigns is not counted (the sites' ledgers start empty in {})"
NO_DP_LINE = (
    "privacy=off: this run's sites keep fresh ledgers in {} (its exact releases would make the "
    "task's shared ledgers' ε infinite and refuse every later DP campaign)"
)


def wants_fresh(federation: dict[str, Any]) -> bool:
    """``federation.fresh_ledgers`` as a bool (true/false only: a typo must not share ledgers)."""
    value = federation.get("fresh_ledgers", False)
    if isinstance(value, bool):
        return value
    raise ConfigError(f"federation.fresh_ledgers must be true or false (got {value!r})")


def ledger_folder(
    federation: dict[str, Any],
    task: str,
    run_dir: Path,
    *,
    sweep_dir: Path | None,
    resumed: bool,
    private: bool = True,
) -> tuple[Path | None, str | None]:
    """(the folder the simulated sites' ledgers go to, None to leave ``LHSFED_LEDGER_DIR`` as
    it is; the console line to show, or None).

    A run without DP (``private=False``) is a throwaway by nature: its releases are exact,
    their ε infinite, so in the task's shared ledgers it would end every later DP campaign of
    the task. It gets fresh ledgers of its own, and the console says why."""
    fresh = wants_fresh(federation)
    explicit = os.environ.get(LEDGER_DIR_ENV)
    if explicit:
        if fresh:
            raise ConfigError(
                f"federation.fresh_ledgers=true and {LEDGER_DIR_ENV}={explicit} both say where the "
                f"sites' ledgers are; unset {LEDGER_DIR_ENV} or drop federation.fresh_ledgers"
            )
        return None, None
    if resumed and (recorded := recorded_folder(run_dir)) is not None:
        return recorded, None
    if fresh or not private:
        folder = (Path(sweep_dir) if sweep_dir else Path(run_dir)).absolute() / LEDGERS
        return folder, (FRESH_LINE if fresh else NO_DP_LINE).format(folder)
    root = Path(str(federation.get("ledger_dir") or DEFAULT_LEDGER_DIR)).expanduser()
    return root.absolute() / task, None


def recorded_folder(run_dir: Path) -> Path | None:
    """The ledger folder a run's ``site_policy.json`` recorded (None: no such record)."""
    policies = read_json(Path(run_dir) / SITE_POLICY) or {}
    folders = {Path(p["ledger_path"]).parent for p in policies.values() if p.get("ledger_path")}
    return folders.pop() if len(folders) == 1 else None


def queried_folder(task_args: str) -> Path | None:
    """The shared ledger folder of the runs a query asks about: drift's ``run_identity`` (the
    champion's run), else compare's ``champion``, then ``challenger``, the first whose run
    folder recorded the task's ledgers (``<ledger_dir>/<task>``). A throwaway run's own
    ``ledgers/`` (fresh ledgers, privacy=off with its infinite ε) is not one: None then, and
    the query's own folder holds its charge."""
    if os.environ.get(LEDGER_DIR_ENV):  # named outright: as for a training run, it stands
        return None
    try:
        args = json.loads(task_args) if task_args else {}
    except ValueError:
        return None
    if not isinstance(args, dict):
        return None
    identities = [args.get("run_identity")] + [
        (args.get(role) or {}).get("run_identity") for role in ("champion", "challenger")
    ]
    for identity in identities:
        folder = recorded_folder(Path(str(identity))) if identity else None
        if folder is not None and folder.name != LEDGERS:
            return folder
    return None


def exported(folder: Path | None) -> AbstractContextManager[None]:
    """``LHSFED_LEDGER_DIR=folder`` while the simulated sites run (Ray workers and the
    in-process ClientApp read it), the previous value back afterwards; None changes nothing."""
    return exported_variable(LEDGER_DIR_ENV, None if folder is None else str(folder))
