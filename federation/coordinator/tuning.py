"""Federated tuning: ``lhsfed-train --multirun +tune=federated`` (Hydra's Optuna sweeper).

Every trial is a whole federation, and with DP every trial spends ε at every site. So a
sweep is accounted as one thing: all its trials write to the SAME site ledgers (in simulation
the task's ledgers, shared with its campaigns: federation.coordinator.site_ledgers; with
``federation.fresh_ledgers=true``, ``<sweep>/ledgers``), and each site's cap bounds the search
as a whole, not each trial. The objective is the pooled
validation loss of the trial's selected round (``summary["selection"]``): the test split
plays no part in the choice. ``sweep_summary.json`` beside the trials says which trial won,
every trial's loss, and per site the ε the whole search spent (every trial's training and
releases) and the site's lifetime ε after it, read back from the ledgers; after each trial the
registry versions of the sweep's trials (``campaign=``) are tagged with the same numbers, the
sweep's own MLflow run (the parent of its trials' runs) gets the summary so far, and a
trial's report shows them (federation.modeler.run_evaluation).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from federation.core import atomic
from federation.core.errors import FederationError, LhsFedError
from federation.core.run_layout import (
    HYDRA_OVERRIDES,
    SITE_POLICY,
    SUMMARY,
    SWEEP_RUNS,
    SWEEP_SUMMARY,
    read_json,
)

log = logging.getLogger(__name__)
OBJECTIVE = "pooled validation loss of the selected round (summary.json selection.validation.loss)"


def in_sweep() -> bool:
    """True inside a ``--multirun`` job (a trial), False in a single run."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def trial_objective(run_dir: Path) -> float:
    """What a trial returns to the sweeper: its selected round's pooled validation loss."""
    summary = read_json(Path(run_dir) / SUMMARY) or {}
    try:
        return float(summary["selection"]["validation"]["loss"])
    except (KeyError, TypeError, ValueError):
        raise FederationError(
            f"{Path(run_dir) / SUMMARY} has no selection.validation.loss (no round "
            "was validated); this trial cannot be scored"
        ) from None


# ---- the sweep summary: pure reads of the trial folders and the site ledgers ----------------


def trial_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders (those Hydra saved overrides in), in job order."""
    found = [p for p in Path(sweep_dir).iterdir() if (p / HYDRA_OVERRIDES).is_file()]
    return sorted(found, key=lambda p: (len(p.name), p.name))  # job numbers: 0, 1, ..., 10


def trial_record(run_dir: Path, error: str | None = None) -> dict[str, Any]:
    """One trial: its overrides, its validation loss (None if it failed) and selected round."""
    overrides = [str(o) for o in OmegaConf.load(run_dir / HYDRA_OVERRIDES)]
    selection = (read_json(run_dir / SUMMARY) or {}).get("selection") or {}
    loss = (selection.get("validation") or {}).get("loss")
    return {
        "trial": run_dir.name,
        "run_dir": str(run_dir.resolve()),
        "overrides": overrides,
        "status": "complete" if loss is not None and error is None else "failed",
        "validation_loss": loss,
        "selected_round": selection.get("round"),
        "stopped_early": selection.get("stopped_early"),
        "error": error,
    }


def _site_search_epsilon(site: str, policy: dict, runs: set[str]) -> dict[str, Any]:
    """ε the site spent on the sweep's runs, composed by its own accountant at its own δ
    from its ledger, and the site's total over every run its ledger holds."""
    from client.ledger import SiteLedger
    from client.node_identity import NodeIdentity
    from federation.core.privacy import epsilon_spent

    ledger = SiteLedger(
        Path(policy["ledger_path"]), site=site, identity=NodeIdentity.of_key(Path(policy["node_key"]))
    )
    entries = [e for e in ledger.entries() if e.run in runs]
    # The δ the site accounted at (its rows say it: a derived δ is "auto" in site_policy.json).
    delta = entries[-1].delta if entries else policy["delta"]
    return {
        "epsilon_search": epsilon_spent(
            [e.accountant_step for e in entries], delta=delta, accountant=policy["accountant"]
        ),
        "epsilon_site_total": ledger.last_total(),
        "max_epsilon": policy["max_epsilon"],
        "delta": delta,
        "steps": sum(e.steps for e in entries if not e.is_release),  # DP-SGD steps
        "trials_spent": len({e.run for e in entries}),
        "ledger": policy["ledger_path"],
    }


def search_privacy(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Per site, what the whole search spent, from the ledgers the sites wrote (simulation:
    the policies in each trial's site_policy.json); in deployment the ledgers stay at the
    hospitals, so the last ε each site reported for itself (its total) stands in."""
    runs = {t["run_dir"] for t in trials}
    policies: dict[str, dict] = {}
    for trial in trials:
        policies |= read_json(Path(trial["run_dir"]) / SITE_POLICY) or {}
    if policies:
        return {
            "source": "site ledgers",
            "sites": {
                site: _site_search_epsilon(site, policy, runs)
                for site, policy in sorted(policies.items())
                if Path(policy["ledger_path"]).is_file()
            },
        }
    reported: dict[str, Any] = {}
    for trial in trials:
        sites = ((read_json(Path(trial["run_dir"]) / SUMMARY) or {}).get("privacy") or {}).get("sites") or {}
        reported |= {site: {"epsilon_site_total": v.get("site_epsilon")} for site, v in sites.items()}
    return {"source": "the sites' own reports (ledgers are at the hospitals)", "sites": reported}


def sweep_summary(sweep_dir: Path, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Best trial, every trial with its validation loss, ε per site of the whole search."""
    trials = [trial_record(d, (errors or {}).get(d.name)) for d in trial_dirs(sweep_dir)]
    scored = [t for t in trials if t["status"] == "complete"]
    best = min(scored, key=lambda t: t["validation_loss"]) if scored else None
    if best:  # the winning trial as one single run (the sweep's own +tune= left out)
        chosen = [o for o in best["overrides"] if not o.lstrip("+~").startswith("tune=")]
        best = best | {"command": "lhsfed-train " + " ".join(chosen)}
    return {"objective": OBJECTIVE, "best": best, "trials": trials, "privacy": search_privacy(trials)}


def write_sweep_summary(sweep_dir: Path, errors: dict[str, str] | None = None) -> Path:
    path = Path(sweep_dir) / SWEEP_SUMMARY
    atomic.write_json(path, sweep_summary(sweep_dir, errors))
    return path


def registry_request(config: DictConfig):
    """A job's ``campaign=`` / ``registry.*`` as federation.coordinator.registry.CampaignRequest
    and its task (None: the sweep is not logged)."""
    import json

    from federation.coordinator.registry import campaign_request, task_name
    from federation.core.dataspec import spec_from_json

    data = OmegaConf.to_container(config.data, resolve=True)
    task = task_name(spec_from_json(json.dumps(data, sort_keys=True)))
    registry = OmegaConf.select(config, "registry", default=None)
    wanted = {
        "campaign": OmegaConf.select(config, "campaign", default=None),
        "registry": OmegaConf.to_container(registry, resolve=True) if registry is not None else {},
    }
    request = campaign_request(wanted, task)
    return None if request is None else (request, task)


def tag_registered_trials(request, task: str, summary_path: Path, *, status: str | None = None) -> None:
    """A sweep with ``campaign=`` (or ``registry.enabled``): every registry version of its
    trials gets the whole search's ε per site so far (the last trial's tags: the whole
    search's), and the sweep's own MLflow run (the parent of its trials' runs) its summary so
    far; ``status`` ends that run."""
    from federation.coordinator.registry import record_search, record_sweep

    summary = read_json(summary_path) or {}
    if not summary.get("trials"):
        return
    record_search(request.uri, task, summary, summary_path)
    record_sweep(request.uri, request.campaign, summary, summary_path, status=status)


# ---- the Hydra callback ---------------------------------------------------------------------


class SweepAccounting(Callback):
    """Registered in configs/config.yaml, so that every ``--multirun`` (Optuna or a plain grid)
    shares one ledger folder and leaves a sweep summary; single runs are untouched.

    A trial that fails with a user-fixable error (a site cap refusing every round, say)
    stops the sweep with one line: later trials would only spend more of the same budget.
    """

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}
        self.logged: dict[tuple[str, str], tuple[Any, str]] = {}  # (uri, campaign) -> (request, task)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        log.info("every trial of this sweep spends from the same site ledgers (site_policy.json)")
        # an earlier sweep's MLflow run in a reused sweep folder is not this sweep's
        (Path(config.hydra.sweep.dir) / SWEEP_RUNS).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        run_dir = Path(config.hydra.runtime.output_dir)
        failed = job_return.status == JobStatus.FAILED
        # The exception itself: JobReturn.return_value would re-raise it and print a header.
        error = job_return._return_value if failed else None
        if failed:
            self.errors[run_dir.name] = str(error)
        path = write_sweep_summary(Path(config.hydra.sweep.dir), self.errors)
        stops = isinstance(error, LhsFedError)
        wanted = registry_request(config)
        if wanted is not None:
            request, task = wanted
            self.logged[(request.uri, request.campaign)] = wanted
            tag_registered_trials(request, task, path, status="FAILED" if stops else None)
        if stops:
            print(
                f"lhsfed-train: error: trial {run_dir.name} ({run_dir}): "
                f"{error}; the sweep stops here, its summary so far is "
                f"{path}",
                file=sys.stderr,
            )
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        path = write_sweep_summary(Path(config.hydra.sweep.dir), self.errors)
        for request, task in self.logged.values():  # the sweep's MLflow runs, complete
            tag_registered_trials(request, task, path, status="FINISHED")
        best = (read_json(path) or {}).get("best") or {}
        print(
            f"sweep summary: {path} (best: trial {best.get('trial')}, validation loss "
            f"{best.get('validation_loss')})"
        )
