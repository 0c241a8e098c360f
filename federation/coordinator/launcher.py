"""``lhsfed-train``: the coordinator's Hydra launcher.

A thin ``@hydra.main`` around ``train(cfg)``: compose, validate everything up front (one
clear line on error), flatten to Flower's run config, and run the federation.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from federation.coordinator import ray_cluster, site_ledgers
from federation.coordinator.exported_env import site_data_dir
from federation.coordinator.hydra_folder import (
    HYDRA_FILES,
    LAUNCH_FILES,
    FolderRecord,
    move_log_file,
    refuse_outside_runs_root,
    refuse_uncreatable,
)
from federation.coordinator.resume import finished_run, resumed_config
from federation.core.atomic import write_json
from federation.core.errors import AbsentSitesError, ConfigError, FederationError, LhsFedError
from federation.core.run_layout import (
    CHECKPOINT,
    LAUNCHER_LOG,
    METRICS,
    MODEL,
    RUN_ARTEFACTS,
    SITE_POLICY,
    SUMMARY,
    WARM_START,
    read_json,
)
from federation.core.settings import RunSettings, flatten_config, number

log = logging.getLogger(__name__)
# configs/ sits beside the packages at the repository root (editable install).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
FEDERATION_MODES = ("simulation", "deployment")
# ray: Flower's simulation runtime (one process per client, as SuperNodes); inprocess: the
# same ServerApp loop and ClientApp in this process (no ~15 s runtime start: sweeps of small
# federations, tests).
SIMULATION_RUNTIMES = ("ray", "inprocess")


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
    from federation.core.data import check_site_sources  # pandas, sklearn: not for a refusal

    check_site_sources(settings.data, Path(data_dir) if data_dir else None)


def refuse_used_folder(output_dir: Path) -> None:
    """A new run in a folder holding another run's files would append to its metrics, replace
    its model and, in simulation, compose its sites' ε with the old run's ledger entries."""
    found = [name for name in RUN_ARTEFACTS if (Path(output_dir) / name).exists()]
    if not found:
        return
    instead = (
        f"continue it with resume={output_dir}"
        if (Path(output_dir) / CHECKPOINT).exists()
        else "it has no checkpoint to resume from; move it away"
    )
    raise ConfigError(
        f"{output_dir} already holds a run ({', '.join(found)}); {instead}, or choose another hydra.run.dir"
    )


class RefuseUsedRunFolder(Callback):
    """Runs ``refuse_used_folder`` before Hydra saves ``.hydra/`` into the run folder (it
    writes the config before calling the task), so a refused run changes nothing there; and
    notes what was there (``record``), so that what Hydra made for a run refused later, or
    for a resume, can be taken back."""

    record: FolderRecord | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        _exit_on_config_error(refuse_outside_runs_root, run_dir, "hydra.run.dir")
        _exit_on_config_error(refuse_uncreatable, run_dir)
        RefuseUsedRunFolder.record = FolderRecord.before_hydra(run_dir)
        if not config.get("resume"):  # a resume writes into the resumed folder, by design
            _exit_on_config_error(refuse_used_folder, run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        _exit_on_config_error(refuse_outside_runs_root, sweep, "hydra.sweep.dir")
        for job_dir in sorted(sweep.iterdir()) if sweep.is_dir() else ():
            if job_dir.is_dir():
                _exit_on_config_error(refuse_used_folder, job_dir)


def write_simulated_policies(settings: RunSettings, output_dir: Path) -> None:
    """What each simulated hospital enforces (its LHSFED_* policy or the simulation defaults),
    written to the run folder before it starts; the ClientApp derives the same policy."""
    import json

    from client.site_policy import simulated_policy

    policies = {
        site: simulated_policy(site, run_folder=output_dir).to_json() for site in settings.data.site_names
    }
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / SITE_POLICY).write_text(json.dumps(policies, indent=1) + "\n")


def _exit_on_config_error(check, *args) -> None:
    try:
        check(*args)
    except ConfigError as err:
        print(f"lhsfed-train: error: {err}", file=sys.stderr)
        sys.exit(2)


def simulated_nodes(settings: RunSettings, federation: dict[str, Any]) -> int:
    """``federation.num_nodes`` (default: one per site); a node without a site is refused."""
    sites = settings.data.site_names
    if federation.get("num_nodes") is None:
        return len(sites)
    nodes = number(federation["num_nodes"], "federation.num_nodes")
    if not 1 <= nodes <= len(sites):
        raise ConfigError(
            f"federation.num_nodes={nodes}: the dataset {settings.data.name} has "
            f"{len(sites)} sites ({', '.join(sites)}), one per simulated node; set "
            f"federation.num_nodes between 1 and {len(sites)}, or null"
        )
    return nodes


MINIMUM_KEYS = ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes")


def refuse_unreachable_minimums(settings: RunSettings, nodes: int, what: str) -> None:
    """A ``strategy.min_*_nodes`` above the nodes there can be: Flower would wait for them
    forever (a round never starts), so it is refused before anything starts, every key at once."""
    params = settings.strategy.params
    high = [f"strategy.{k}={params[k]}" for k in MINIMUM_KEYS if k in params and int(params[k]) > nodes]
    if high:
        raise ConfigError(
            f"{', '.join(high)}: {what} {nodes}, so no round could ever start (the run would wait "
            f"forever); set {' and '.join(h.split('=')[0] for h in high)} to at most {nodes}"
        )


def train(cfg: DictConfig, output_dir: Path, overrides: list[str] | None = None) -> Path:
    """Validate and run one federation (or continue one: ``resume=``); returns the run folder."""
    resume = cfg.get("resume")
    if resume:
        hydra_dir = output_dir
        cfg, output_dir = resumed_config(str(resume), cfg, list(overrides or []))
        if (finished := finished_run(output_dir, cfg)) is not None:
            print(finished)
            return output_dir
        move_log_file(hydra_dir, output_dir / LAUNCHER_LOG)
    plain = plain_config(cfg, output_dir)
    run_config = flatten_config(plain) | ({"run.resume": True} if resume else {})
    settings = RunSettings.from_run_config(run_config)
    # A resume continues from its checkpoint, never from init= again (the alias it named may
    # have moved since); the registry version a campaign's lineage names is the one the run
    # recorded when it started (None: not from the registry).
    warm = None if resume else warm_start(cfg, settings)
    run_config |= warm.run_config() if warm else {}
    parent_version = recorded_parent_version(output_dir) if resume else warm and warm.parent_version
    campaign = campaign_of(plain, settings)
    federation = plain.get("federation") or {}
    for key in (*MINIMUM_KEYS, "round_timeout"):
        if key in settings.strategy.params:  # read by the ServerApp, after the runtime started
            number(settings.strategy.params[key], f"strategy.{key}", float if "timeout" in key else int)
    if warm and warm.parent_version:
        keep_parent_drift(OmegaConf.select(cfg, "registry.uri", default=None), settings, warm, output_dir)
    if warm:
        record_warm_start(warm, output_dir)
    nodes = run_flower(run_config, settings, federation, output_dir)
    report_sat_out(settings, output_dir, nodes=nodes)
    report_absent_sites(output_dir, allowed=bool(plain.get("allow_absent_sites")))
    log_campaign_run(campaign, settings, output_dir, parent_version=parent_version, sweep_dir=sweep_of_run())
    return output_dir


def sweep_of_run() -> Path | None:
    """The sweep folder of a ``--multirun`` trial (None: a single run)."""
    from federation.coordinator.tuning import in_sweep

    return Path(HydraConfig.get().sweep.dir) if in_sweep() else None


def run_flower(
    run_config: dict[str, Any], settings: RunSettings, federation: dict[str, Any], output_dir: Path
) -> int:
    """One Flower run of ``run_config`` (training, or a site query task: server.tasks) in the
    configured mode and runtime; returns how many sites it addressed."""
    mode = federation.get("mode", "simulation")
    if mode not in FEDERATION_MODES:
        raise ConfigError(f"federation.mode {mode!r} is unknown; choose one of {FEDERATION_MODES}")
    if mode == "deployment":  # the sites' data never reaches the coordinator: no file check
        from federation.coordinator.deployment import run_in_deployment

        if federation.get("client_app"):  # each site runs the ClientApp it pinned, never one named here
            raise ConfigError(
                "federation.client_app applies to simulated sites only; a deployed site runs "
                "the ClientApp installed in its image: remove the override"
            )

        if site_ledgers.wants_fresh(federation):  # a hospital's ledger is its own, never the coordinator's
            raise ConfigError(
                "federation.fresh_ledgers applies to simulated sites only; a deployed site spends "
                "from the ledger at its own ledger-path: remove the override"
            )
        sites = len(settings.data.sites)
        refuse_unreachable_minimums(settings, sites, "the dataset's sites (one node each) are")
        timeout = number(federation["timeout"], "federation.timeout", float)
        run_in_deployment(
            run_config,
            run_dir=output_dir,
            superlink=federation.get("superlink"),
            ca_cert=federation.get("ca_cert"),
            timeout=timeout,
        )
        return len(settings.data.sites)
    num_nodes = simulated_nodes(settings, federation)
    refuse_unreachable_minimums(settings, num_nodes, "the simulated nodes are")
    client_cpus = number(federation.get("client_cpus", 1), "federation.client_cpus", float)
    runtime = federation.get("runtime") or "ray"
    if runtime not in SIMULATION_RUNTIMES:
        raise ConfigError(f"federation.runtime {runtime!r} is unknown; choose one of {SIMULATION_RUNTIMES}")
    ray_address = federation.get("ray_address")
    if ray_cluster.head_address(ray_address) is not None:
        if runtime != "ray":
            raise ConfigError(
                f"federation.ray_address={ray_address} runs the sites on a Ray cluster, which "
                f"federation.runtime={runtime} does not use: set federation.runtime=ray or "
                "federation.ray_address=null"
            )
        ray_cluster.refuse_unreachable(ray_address)  # before anything is written
    check_site_files(settings, federation.get("data_dir"))
    ledgers, line = simulated_ledgers(settings, federation, output_dir)
    if line:
        print(line, flush=True)
    with site_ledgers.exported(ledgers):
        write_simulated_policies(settings, output_dir)
        if runtime == "inprocess":
            run_without_ray(
                run_config | {"run.expected_nodes": num_nodes},
                run_dir=output_dir,
                num_nodes=num_nodes,
                data_dir=federation.get("data_dir"),
                client_app=federation.get("client_app"),
            )
        else:
            from federation.coordinator.simulation import run_in_simulation

            run_in_simulation(
                run_config | {"run.expected_nodes": num_nodes},
                run_dir=output_dir,
                num_nodes=num_nodes,
                client_cpus=client_cpus,
                data_dir=federation.get("data_dir"),
                client_app=federation.get("client_app"),
                ray_address=ray_address,
            )
    return num_nodes


def simulated_ledgers(
    settings: RunSettings, federation: dict[str, Any], output_dir: Path
) -> tuple[Path | None, str | None]:
    """The simulated sites' ledger folder (federation.coordinator.site_ledgers: the task's,
    shared by its campaigns, unless ``federation.fresh_ledgers``) and the line to show.

    A query run (compare, drift) asks about runs the same simulated patients trained: it is
    charged to the ledgers those runs spent from (the champion's first), so the patients'
    lifetime ε counts it, as a deployed site's one ledger does."""
    from federation.coordinator.registry import task_name
    from federation.coordinator.tuning import in_sweep

    if settings.task != "train":
        return site_ledgers.queried_folder(settings.task_args), None

    sweep_dir = Path(HydraConfig.get().sweep.dir) if in_sweep() else None
    return site_ledgers.ledger_folder(
        federation,
        task_name(settings.data),
        output_dir,
        sweep_dir=sweep_dir,
        resumed=settings.resume,
        private=settings.privacy.enabled,
    )


def warm_start(cfg: DictConfig, settings: RunSettings):
    """``init=``'s checked parent model (None without ``init``), as
    federation.coordinator.warm_start.WarmStart; an incompatible one is refused in one line
    before any site is contacted or anything written."""
    from federation.coordinator.warm_start import prepare_warm_start

    registry_uri = OmegaConf.select(cfg, "registry.uri", default=None)
    warm = prepare_warm_start(cfg.get("init"), settings, registry_uri=registry_uri)
    if warm is not None:
        print(f"warm start: {warm.source} (its round {warm.round})", flush=True)
    return warm


def record_warm_start(warm, output_dir: Path) -> None:
    """``warm_start.json``: what ``init=`` named, the registry version it resolved to and its
    round, so a resumed campaign keeps its lineage."""
    write_json(
        output_dir / WARM_START,
        {"source": warm.source, "parent_version": warm.parent_version, "round": warm.round},
    )


def recorded_parent_version(output_dir: Path) -> str | None:
    """The registry version a run recorded it started from (None: none, or not a warm start)."""
    version = (read_json(output_dir / WARM_START) or {}).get("parent_version")
    return None if version is None else str(version)


def keep_parent_drift(registry_uri: str | None, settings: RunSettings, warm, output_dir: Path) -> None:
    """The drift check of the champion this campaign starts from, into its run folder (its
    report shows it; a campaign logs it): one line either way."""
    from federation.coordinator.registry import DEFAULT_URI, latest_drift, task_name

    task = task_name(settings.data)
    found = latest_drift(registry_uri or DEFAULT_URI, task, warm.parent_version, output_dir)
    none = f"none logged on {task} version {warm.parent_version} (lhsfed drift {task})"
    print(f"drift before this campaign: {found or none}", flush=True)


def campaign_of(plain: dict[str, Any], settings: RunSettings):
    """``campaign=`` / ``registry.*`` checked before the run (None: not a campaign)."""
    from federation.coordinator.registry import campaign_request, task_name

    return campaign_request(plain, task_name(settings.data))


# What a campaign writes into its run folder before it is logged: the report and the model card,
# by the modeler's own code (lhsfed evaluate, lhsfed export), which this layer does not import;
# lhsfed-train (federation.cli.train) hands it in before launching (None: nothing is written).
CampaignFiles = Callable[[Path], None]
_campaign_files: CampaignFiles | None = None


def use_campaign_files(write: CampaignFiles | None) -> None:
    """Set what ``write_campaign_files`` runs (federation.cli.train: the report and model card)."""
    global _campaign_files
    _campaign_files = write


def write_campaign_files(output_dir: Path) -> None:
    """A campaign's report and model card, into its run folder before it is logged; a failure
    is one console line (the reason's text in launcher.log) and the run is logged without them."""
    if _campaign_files is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library chatter; the console keeps its lines
            _campaign_files(Path(output_dir))
    except Exception as err:  # noqa: BLE001 - the run and its registration come first
        log.exception("the campaign's report and model card could not be made")
        print(
            f"report: the report and model card of {output_dir} could not be made ("
            f"{type(err).__name__}: {' '.join(str(err).split())[:300]}); the run is logged "
            f"without them (lhsfed evaluate and lhsfed export {output_dir} make them)",
            flush=True,
        )


def log_campaign_run(
    campaign,
    settings: RunSettings,
    output_dir: Path,
    parent_version: str | None = None,
    sweep_dir: Path | None = None,
) -> None:
    """After a successful run: its report and model card (``write_campaign_files``), then log it
    to the registry (docs/learning-loop.md), a sweep's trial (``sweep_dir``) as a child of the
    sweep's MLflow run; one console line. A run that is not a campaign writes nothing more."""
    if campaign is None:
        return
    from federation.coordinator.registry import log_campaign

    write_campaign_files(output_dir)
    try:
        logged = log_campaign(
            output_dir,
            settings,
            campaign=campaign.campaign,
            uri=campaign.uri,
            parent_version=parent_version,
            min_pooled_auroc=campaign.min_pooled_auroc,
            sweep_dir=sweep_dir,
        )
    except ConfigError as err:
        kept = f"the run finished ({output_dir}) but campaign={campaign.campaign} was not logged"
        raise ConfigError(f"{kept}: {err}") from None
    print(f"registry: {logged.line()}")


def run_without_ray(
    run_config: dict[str, Any],
    *,
    run_dir: Path,
    num_nodes: int,
    data_dir: str | None,
    client_app: str | None = None,
) -> None:
    """``federation.runtime=inprocess``: federation.coordinator.inprocess.run_in_process, with the same
    site data folder, signal handling and one-line errors as the Ray runtime."""
    from federation.coordinator.inprocess import run_in_process
    from federation.coordinator.interrupt import exit_on_signals

    with site_data_dir(data_dir), exit_on_signals(run_dir), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library chatter; the console keeps one line per round
        run_in_process(run_config, run_dir=run_dir, num_nodes=num_nodes, client_app=client_app)


def report_sat_out(settings: RunSettings, output_dir: Path, nodes: int) -> None:
    """One console line per site that failed every round; a FederationError if that left
    fewer sites than ``strategy.min_train_nodes`` allows, or if a resumed run ended with
    every site refusing for budget (nothing useful was left of the target)."""
    from federation.core import wire
    from federation.core.records import read_rounds
    from server.progress import budget_left_out, sat_out, show_sat_out

    if not (Path(output_dir) / METRICS).is_file():
        return  # a deployment whose run folder is on the SuperLink's machine only
    records = read_rounds(output_dir)
    spent = budget_left_out(records, wire.BUDGET_REFUSED)
    if spent and settings.resume:
        first = next(iter(spent.values()))
        raise FederationError(
            f"no site has budget left for this run (round {records[-1]['round']}: "
            f"{first}); the run stops: its model is the last round that trained "
            f"({Path(output_dir) / MODEL})"
        )
    failed = sat_out(records)
    show_sat_out(failed)
    minimum = number(settings.strategy.params.get("min_train_nodes", 2), "strategy.min_train_nodes")
    if failed and nodes - len(failed) < minimum:
        raise FederationError(
            f"{len(failed)} site(s) failed every round ({', '.join(failed)}): {nodes - len(failed)} "
            f"of {nodes} trained, fewer than strategy.min_train_nodes={minimum}; fix those sites "
            f"(their reasons are above and in {Path(output_dir) / LAUNCHER_LOG}) or lower "
            "strategy.min_train_nodes"
        )


def report_absent_sites(output_dir: Path, *, allowed: bool) -> None:
    """One console line when a site of the run never trained (summary.json's numbers), and an
    AbsentSitesError (exit 3) unless the run accepts that (``allow_absent_sites=true``)."""
    import json

    from server.progress import absent_line, show_absent

    path = Path(output_dir) / SUMMARY
    if not path.is_file():
        return  # a deployment whose run folder is on the SuperLink's machine only
    line = absent_line(json.loads(path.read_text()))
    if line is None:
        return
    show_absent(line)
    if not allowed:
        raise AbsentSitesError(
            f"{line}: the run's model ({Path(output_dir) / MODEL}) was trained without them; fix "
            f"those sites (their reasons are above and in {Path(output_dir) / LAUNCHER_LOG}) or "
            "accept such a run with allow_absent_sites=true"
        )


def _stop(message: str, code: int) -> None:
    print(f"lhsfed-train: error: {message}", file=sys.stderr)
    sys.exit(code)


def _crash_exit(message: str, code: int) -> None:
    """One line and exit, even when the runtime that crashed left threads that never end: a
    Ray that failed to start (raylet timeout under load) left Flower's server thread waiting
    for it, and ``sys.exit`` then waited forever in the interpreter's join of that thread (a
    coordinator saw a hung command, not an error). Logs and streams are flushed first."""
    stuck = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if stuck:
        log.error("exiting with %s thread(s) of the crashed runtime still running: %s", len(stuck), stuck)
    print(f"lhsfed-train: error: {message}", file=sys.stderr)
    if not stuck:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def train_or_exit(cfg: DictConfig) -> Path:
    """``train`` with its outcome as the console shows it: one line and exit 2 for what the
    user can fix (3 for a run some site never trained in: AbsentSitesError), exit 1 for
    anything else (its traceback goes to launcher.log only)."""
    hydra_dir = Path(HydraConfig.get().runtime.output_dir)
    record, take_back, names = RefuseUsedRunFolder.record, True, HYDRA_FILES
    try:
        return train(cfg, hydra_dir, list(HydraConfig.get().overrides.task))
    except LhsFedError as err:
        from federation.coordinator.tuning import in_sweep

        if in_sweep():
            raise  # a trial: federation.coordinator.tuning.SweepAccounting prints it and stops the sweep
        # Refused (here or by the SuperLink) before the run wrote a round: nothing is kept.
        names = (*HYDRA_FILES, *LAUNCH_FILES)
        _stop(str(err), getattr(err, "exit_code", 2))
    except Exception as err:  # noqa: BLE001 - a bug or a runtime crash: one line, details logged
        take_back = False  # keep the log that holds the traceback
        log.exception("lhsfed-train stopped")
        _crash_exit(
            f"{type(err).__name__}: {' '.join(str(err).split())[:300]}; the full text is in "
            f"{_log_path(hydra_dir)}",
            1,
        )
    finally:
        if take_back and record is not None and record.run_dir == hydra_dir.absolute():
            record.take_back(names)  # a refused run or a resume: Hydra's files only, if that is all


def _log_path(default_dir: Path) -> Path:
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    return Path(files[0]) if files else default_dir / LAUNCHER_LOG


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from federation.coordinator.tuning import in_sweep, trial_objective

    quiet_libraries()
    output_dir = train_or_exit(cfg)
    print(f"run folder: {output_dir}")
    return trial_objective(output_dir) if in_sweep() else None  # what the sweeper minimises
