"""``lhsfed-train``: the coordinator's Hydra launcher.

A thin ``@hydra.main`` around ``train(cfg)``: compose, validate everything up front (one
clear line on error), flatten to Flower's run config, and run the federation.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from federation.data import check_site_sources
from federation.errors import ConfigError, LhsFedError
from federation.resume import resumed_config
from federation.settings import RunSettings, flatten_config

log = logging.getLogger(__name__)
# configs/ sits beside the packages at the repository root (editable install).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
FEDERATION_MODES = ("simulation", "deployment")


def quiet_libraries() -> None:
    """Keep the console to one line per round: silence Flower, Ray and Opacus chatter."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    for name in ("flwr", "ray", "opacus"):
        # A filter, not a level: Flower resets its logger's level when the runtime starts.
        logging.getLogger(name).addFilter(lambda record: record.levelno >= logging.WARNING)


def plain_config(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """The composed config as plain data, with the run folder filled in."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["output_dir"] = str(output_dir)
    return plain


def check_site_files(settings: RunSettings, data_dir: str | None) -> None:
    """Fail before starting the runtime if any simulated site's file is missing or unreadable."""
    check_site_sources(settings.data, Path(data_dir) if data_dir else None)


# What a run writes into its folder; a new run must not start where these are.
RUN_ARTEFACTS = ("metrics.jsonl", "checkpoint.pt", "summary.json", "model.pt", "rounds", "ledgers")


def refuse_used_folder(output_dir: Path) -> None:
    """A new run in a folder holding another run's files would append to its metrics, replace
    its model and, in simulation, compose its sites' ε with the old run's ledger entries."""
    found = [name for name in RUN_ARTEFACTS if (Path(output_dir) / name).exists()]
    if not found:
        return
    instead = (f"continue it with resume={output_dir}" if (Path(output_dir) / "checkpoint.pt").exists()
               else "it has no checkpoint to resume from; move it away")
    raise ConfigError(f"{output_dir} already holds a run ({', '.join(found)}); {instead}, or "
                      "choose another hydra.run.dir")


class RefuseUsedRunFolder(Callback):
    """Runs ``refuse_used_folder`` before Hydra saves ``.hydra/`` into the run folder (it
    writes the config before calling the task), so a refused run changes nothing there."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("resume"):  # a resume writes into the resumed folder, by design
            _exit_on_config_error(refuse_used_folder, Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        for job_dir in sorted(sweep.iterdir()) if sweep.is_dir() else ():
            if job_dir.is_dir():
                _exit_on_config_error(refuse_used_folder, job_dir)


SITE_POLICY_FILE = "site_policy.json"


def write_simulated_policies(settings: RunSettings, output_dir: Path) -> None:
    """What each simulated hospital enforces (its LHSFED_* policy or the simulation defaults),
    written to the run folder before it starts; the ClientApp derives the same policy."""
    import json

    from client.site_policy import simulated_policy

    policies = {site: simulated_policy(site, run_folder=output_dir).to_json()
                for site in settings.data.site_names}
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / SITE_POLICY_FILE).write_text(json.dumps(policies, indent=1) + "\n")


def _exit_on_config_error(check, *args) -> None:
    try:
        check(*args)
    except ConfigError as err:
        print(f"lhsfed-train: error: {err}", file=sys.stderr)
        sys.exit(2)


def train(cfg: DictConfig, output_dir: Path, overrides: list[str] | None = None) -> Path:
    """Validate and run one federation (or continue one: ``resume=``); returns the run folder."""
    resume = cfg.get("resume")
    if resume:
        cfg, output_dir = resumed_config(str(resume), cfg, list(overrides or []))
    plain = plain_config(cfg, output_dir)
    run_config = flatten_config(plain) | ({"run.resume": True} if resume else {})
    settings = RunSettings.from_run_config(run_config)
    federation = plain.get("federation") or {}
    mode = federation.get("mode", "simulation")
    if mode not in FEDERATION_MODES:
        raise ConfigError(f"federation.mode {mode!r} is unknown; choose one of {FEDERATION_MODES}")
    if mode == "deployment":  # the sites' data never reaches the coordinator: no file check
        from federation.deployment import run_in_deployment

        run_in_deployment(run_config, run_dir=output_dir, superlink=federation.get("superlink"),
                          ca_cert=federation.get("ca_cert"), timeout=float(federation["timeout"]))
        return output_dir
    check_site_files(settings, federation.get("data_dir"))
    write_simulated_policies(settings, output_dir)
    from federation.simulation import run_in_simulation

    num_nodes = int(federation.get("num_nodes") or len(settings.data.sites))
    run_in_simulation(run_config | {"run.expected_nodes": num_nodes}, run_dir=output_dir,
                      num_nodes=num_nodes,
                      client_cpus=float(federation.get("client_cpus", 1)),
                      data_dir=federation.get("data_dir"))
    return output_dir


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from federation.tuning import in_sweep, trial_objective

    quiet_libraries()
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        output_dir = train(cfg, output_dir, list(HydraConfig.get().overrides.task))
    except LhsFedError as err:
        if in_sweep():
            raise  # a trial: federation.tuning.SweepAccounting prints it and stops the sweep
        print(f"lhsfed-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"run folder: {output_dir}")
    return trial_objective(output_dir) if in_sweep() else None  # what the sweeper minimises
