"""Campaigns and the model registry, on MLflow's own tracking and registry APIs.

A campaign (``lhsfed-train campaign=NAME``) is one MLflow run of experiment NAME: the run
folder's composed config as params, per-round metrics by step, ε per site, artifacts and
lineage tags (``federation.coordinator.campaign_record`` reads them). A sweep with
``campaign=`` (``--multirun``) is one run of its own, the parent of its trials' runs (MLflow's
nested runs: tag ``mlflow.parentRunId``), with its ``sweep_summary.json``. Its selected model
becomes a version of the task's registered model (one per dataset spec name + label) when it
reaches ``registry.min_pooled_auroc``; the first version is ``champion``, later ones
``challenger`` (promotion is a later, recorded step). MLflow is imported inside the
functions: it is the coordinator's ``registry`` extra, never in a hospital's image.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.coordinator.campaign_record import MODEL_ARTIFACT
from federation.core.errors import ConfigError

DEFAULT_URI = "sqlite:///lhsfed-registry.db"  # relative to the coordinator's working directory
DEFAULT_MIN_POOLED_AUROC = 0.6
CHAMPION, CHALLENGER = "champion", "challenger"
REFERENCE_PREFIX = "registry:"
DRIFT_ARTIFACT = "drift"  # lhsfed drift logs drift.json under it on the champion's run
_SQLITE = "sqlite:///"


@dataclass(frozen=True)
class Logged:
    """What ``log_campaign`` did: the MLflow run, and the version it registered (or None)."""

    run_id: str
    campaign: str
    task: str
    version: str | None
    alias: str | None
    auroc: float | None
    split: str
    minimum: float
    se: float = 0.0

    def line(self) -> str:
        got = "no AUROC" if self.auroc is None else f"AUROC {self.auroc:.3f}"
        if self.auroc is None and math.isinf(self.se):
            got = "AUROC undefined under the DP noise: the bar could not be checked"
        elif self.se:
            got += f" ± {self.se:.3f} (DP noise)"
        head = f"campaign {self.campaign}: MLflow run {self.run_id}; task {self.task}"
        if self.version is None:
            bar = f"registry.min_pooled_auroc={self.minimum}"
            if self.auroc is None:  # the bar reads validation only, never the test release
                return f"{head}: no version registered (no pooled {self.split} AUROC to compare with {bar})"
            return f"{head}: no version registered (pooled {self.split} {got} < {bar})"
        return f"{head} version {self.version} = {self.alias} (pooled {self.split} {got})"


@dataclass(frozen=True)
class ResolvedModel:
    """A registry reference resolved to a downloaded model.pt and the version it named."""

    path: Path
    task: str
    version: str


@dataclass(frozen=True)
class CampaignRequest:
    """The launcher's ``campaign`` / ``registry.*`` keys, checked before the run starts."""

    campaign: str
    uri: str
    min_pooled_auroc: float


def campaign_request(config: dict[str, Any], task: str) -> CampaignRequest | None:
    """What to log after the run (None: not a campaign), or one ConfigError naming the key."""
    import importlib.util

    from federation.core.settings import number

    registry = config.get("registry") or {}
    name = config.get("campaign") or (task if str(registry.get("enabled")).lower() == "true" else None)
    if not name:
        return None
    minimum = registry.get("min_pooled_auroc", DEFAULT_MIN_POOLED_AUROC)
    minimum = number(minimum, "registry.min_pooled_auroc", float)
    if not 0.0 <= minimum <= 1.0:
        raise ConfigError(
            f"registry.min_pooled_auroc={minimum} is not an AUROC; give one in [0, 1], e.g. 0.6"
        )
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            f"campaign={name} logs the run to MLflow, which is not installed here: install the "
            "coordinator's extra (pip install 'lhs-federation[registry]') or drop campaign=/registry.enabled"
        )
    return CampaignRequest(str(name), str(registry.get("uri") or DEFAULT_URI), minimum)


# Version tags of ε beyond the run's own (``epsilon.SITE``): the site's lifetime after the run,
# and, for a sweep's trials, what the whole search spent and the lifetime after it.
SITE_EPSILON = "site_epsilon"
SEARCH_EPSILON = "search_epsilon"
SEARCH_SITE_EPSILON = "search_site_epsilon"
SEARCH_TRIALS = "search_trials"
SEARCH_SUMMARY = "search_summary"
# A sweep's run and its trials' runs (its children, tag mlflow.parentRunId)
SWEEP_DIR = "sweep_dir"  # on the sweep's run: its folder
SWEEP_TRIAL = "sweep_trial"  # on a trial's run: its job folder's name in the sweep ("0", "1", ...)
BEST_TRIAL, BEST_RUN_ID = "best_trial", "best_run_id"  # on the sweep's run: the chosen trial


def task_name(spec) -> str:
    """The registered model of a dataset spec: its name and label column (``uci_heart-num``)."""
    return f"{spec.name}-{spec.label.column}"


def is_reference(text: str | None) -> bool:
    return bool(text) and str(text).startswith(REFERENCE_PREFIX)


def log_campaign(
    run_dir: Path,
    settings,
    *,
    campaign: str,
    uri: str,
    parent_version: str | None,
    min_pooled_auroc: float = DEFAULT_MIN_POOLED_AUROC,
    sweep_dir: Path | None = None,
) -> Logged:
    """Log a finished run as an MLflow run of experiment ``campaign``; register its model as a
    new version of the task when its pooled AUROC reaches ``min_pooled_auroc``. A trial of a
    sweep (``sweep_dir``) is logged the same way, as a child of the sweep's run (``sweep_run``);
    the registration rule is the same."""
    from federation.coordinator.campaign_record import read_campaign

    run_dir, task = Path(run_dir), task_name(settings.data)
    record = read_campaign(run_dir)
    tags = _run_tags(settings, record, campaign=campaign, task=task, parent_version=parent_version)
    # A run folder logged after the fact (its .hydra config has no output_dir): the sites
    # named the run by its absolute folder, as the launcher's output_dir is.
    tags["run_identity"] = settings.output_dir or str(run_dir.absolute())
    with _registry_errors(uri):
        client = _client(uri, create=True)
        experiment = _experiment(client, campaign, uri)
        run_name = run_dir.name
        if sweep_dir is not None:
            from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

            parent = sweep_run(client, uri, campaign, sweep_dir)
            tags |= {MLFLOW_PARENT_RUN_ID: parent, SWEEP_TRIAL: run_dir.name}
            run_name = f"trial {run_dir.name}"
        run_id = client.create_run(experiment, run_name=run_name, tags=tags).info.run_id
        _log_content(client, run_id, run_dir, record)
        version = alias = None
        passed = record.bar.reached(min_pooled_auroc)
        if passed:
            version, alias = _register(client, task, run_id, tags, record)
        client.set_terminated(run_id)
    bar = record.bar
    return Logged(run_id, campaign, task, version, alias, bar.auroc, bar.split, min_pooled_auroc, bar.se)


def _run_tags(settings, record, *, campaign: str, task: str, parent_version: str | None) -> dict[str, str]:
    """Lineage and provenance: spec hash, sites, app version, git commit (when a checkout)."""
    import federation
    from client.site_spec import spec_hash
    from federation.coordinator.campaign_record import git_commit, key

    commit = git_commit(Path(federation.__file__).resolve().parents[1])
    tags = {
        "campaign": campaign,
        "task": task,
        "spec_hash": spec_hash(settings.data),
        "sites": ",".join(record.sites),
        "app_version": federation.__version__,
        "parent_version": parent_version or "none",
        # The name the sites know this run by (client.budget.run_identity): a site's compare and
        # drift answers look up what it recorded for the run under it (client.site_state).
        "run_identity": settings.output_dir,
        "selected_round": str(record.selected_round),
        "selection_split": record.bar.split,
        **{key("epsilon", site).replace("/", "."): _text(eps) for site, eps in record.epsilon.items()},
        # the site's lifetime ε after the run (its ledger): earlier campaigns included
        **{key(SITE_EPSILON, site).replace("/", "."): _text(e) for site, e in record.site_epsilon.items()},
    }
    return tags | ({"git_commit": commit, "mlflow.source.git.commit": commit} if commit else {})


def _text(value: float | None) -> str:
    return "null" if value is None else f"{value:.6g}"


def _log_content(client, run_id: str, run_dir: Path, record) -> None:
    from mlflow.entities import Metric, Param
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

    from federation.coordinator.campaign_record import artifacts

    # A longer value (a long feature list) is cut; the whole config is the config/ artifact.
    params = [Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(record.params.items())]
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, step) for k, v, step in record.metrics]
    for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH])
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH])
    for path, folder in artifacts(run_dir):
        client.log_artifact(run_id, str(path), artifact_path=folder)


def _register(client, task: str, run_id: str, tags: dict[str, str], record) -> tuple[str, str]:
    """A new version of ``task`` (created on first use): champion if there is none, else challenger."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = dict(client.get_registered_model(task).aliases)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(task, tags={"spec_hash": tags["spec_hash"]}, description=_DESCRIPTION)
        aliases = {}
    version_tags = {k: v for k, v in tags.items() if not k.startswith("mlflow.")}
    if record.bar.auroc is not None:
        version_tags[f"{record.bar.split}_pooled_auroc"] = f"{record.bar.auroc:.6g}"
    elif record.bar.undefined:
        version_tags[f"{record.bar.split}_pooled_auroc"] = "undefined (DP noise); bar not checked"
    source = f"runs:/{run_id}/{MODEL_ARTIFACT}"
    version = client.create_model_version(task, source, run_id=run_id, tags=version_tags).version
    alias = CHALLENGER if CHAMPION in aliases else CHAMPION
    client.set_registered_model_alias(task, alias, str(version))
    return str(version), alias


_DESCRIPTION = (
    "lhs-federation risk model; versions come from campaigns (lhsfed-train campaign=NAME), "
    "aliases champion (in use) and challenger (the latest candidate)."
)


def resolve_reference(ref: str, uri: str, download_dir: Path) -> ResolvedModel:
    """``registry:TASK@ALIAS`` or ``registry:TASK/VERSION`` -> its model.pt, downloaded."""
    task, alias, number = parse_reference(ref)
    with _registry_errors(uri):
        client = _client(uri, create=False)
        version = _version(client, ref, uri, task, alias, number)
        Path(download_dir).mkdir(parents=True, exist_ok=True)
        from federation.core.run_layout import MODEL

        local = client.download_artifacts(version.run_id, f"{MODEL_ARTIFACT}/{MODEL}", str(download_dir))
    return ResolvedModel(Path(local), task, str(version.version))


def resolve_model(ref: str, uri: str, download_dir: Path) -> Path:
    """The contract's form of ``resolve_reference``: the local model.pt only."""
    return resolve_reference(ref, uri, download_dir).path


def parse_reference(ref: str) -> tuple[str, str | None, str | None]:
    """(task, alias, version) of ``registry:TASK@ALIAS`` / ``registry:TASK/VERSION``."""
    body = str(ref)[len(REFERENCE_PREFIX) :] if is_reference(ref) else ""
    task, at, alias = body.rpartition("@")
    if at and task and alias:
        return task, alias, None
    task, slash, number = body.rpartition("/")
    if slash and task and number.isdigit():
        return task, None, number
    raise ConfigError(
        f"{ref!r} is not a registry reference; write registry:TASK@ALIAS (e.g. "
        "registry:uci_heart-num@champion) or registry:TASK/VERSION (e.g. registry:uci_heart-num/1)"
    )


def _version(client, ref: str, uri: str, task: str, alias: str | None, number: str | None):
    from mlflow.exceptions import MlflowException

    _registered(client, uri, task)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(task, alias)
        return client.get_model_version(task, number)
    except MlflowException:
        versions = [v.version for v in _versions(client, task)]
        aliases = {a: str(v) for a, v in client.get_registered_model(task).aliases.items()}
        known = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items())) or "none"
        raise ConfigError(
            f"{ref}: task {task} in {uri} has no {'alias ' + alias if alias else 'version ' + str(number)}; "
            f"its versions: {', '.join(map(str, sorted(versions, key=int))) or 'none'}, aliases: {known}"
        ) from None


def _registered(client, uri: str, task: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(task)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        known = sorted(m.name for m in client.search_registered_models())
        raise ConfigError(
            f"task {task!r} is not in the registry {uri}; registered tasks: {', '.join(known) or 'none'} "
            "(a campaign registers one: lhsfed-train campaign=NAME)"
        ) from None


def list_tasks(uri: str) -> list[dict[str, Any]]:
    """Every registered task: its versions and aliases."""
    with _registry_errors(uri):
        client = _client(uri, create=False)
        return [
            {
                "task": model.name,
                "aliases": {a: str(v) for a, v in sorted(model.aliases.items())},
                "versions": sorted(int(v.version) for v in _versions(client, model.name)),
            }
            for model in sorted(client.search_registered_models(), key=lambda m: m.name)
        ]


def show_task(uri: str, task: str) -> list[dict[str, Any]]:
    """Every version of ``task``: aliases, lineage, the selected round's metrics, ε per site."""
    with _registry_errors(uri):
        client = _client(uri, create=False)
        by_version: dict[str, list[str]] = {}
        for alias, version in _registered(client, uri, task).aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        versions = sorted(_versions(client, task), key=lambda v: int(v.version))
        return [_version_view(client, v, by_version.get(str(v.version), [])) for v in versions]


def _version_view(client, version, aliases: list[str]) -> dict[str, Any]:
    metrics = client.get_run(version.run_id).data.metrics
    tags = dict(version.tags)
    return {
        "version": str(version.version),
        "aliases": sorted(aliases),
        "parent_version": tags.get("parent_version", "none"),
        "campaign": tags.get("campaign"),
        "run_id": version.run_id,
        "selected_round": tags.get("selected_round"),
        "metrics": _under(metrics, "selected/"),
        "epsilon": _under(tags, "epsilon."),
        "site_epsilon": _under(tags, f"{SITE_EPSILON}."),
        "search": _search_view(tags),
    }


def _search_view(tags: dict[str, str]) -> dict[str, Any] | None:
    """What the sweep this version came from spent (None: not from a sweep)."""
    if SEARCH_TRIALS not in tags:
        return None
    return {
        "trials": tags[SEARCH_TRIALS],
        "summary": tags.get(SEARCH_SUMMARY),
        "epsilon": _under(tags, f"{SEARCH_EPSILON}."),
        "site_epsilon": _under(tags, f"{SEARCH_SITE_EPSILON}."),
    }


def record_search(uri: str, task: str, summary: dict[str, Any], summary_path: Path) -> list[str]:
    """Tag every registered version of a sweep's trials (federation.coordinator.tuning) with
    what the whole search spent per site (its ledger rows of every trial) and the site's
    lifetime ε after it; returns the versions tagged."""
    from federation.coordinator.campaign_record import key

    trials = {str(Path(t["run_dir"]).resolve()) for t in summary["trials"]}
    sites = (summary.get("privacy") or {}).get("sites") or {}
    tags = {SEARCH_TRIALS: str(len(trials)), SEARCH_SUMMARY: str(Path(summary_path).resolve())}
    for site, spent in sites.items():
        tags[key(SEARCH_EPSILON, site).replace("/", ".")] = _text(spent.get("epsilon_search"))
        tags[key(SEARCH_SITE_EPSILON, site).replace("/", ".")] = _text(spent.get("epsilon_site_total"))
    tagged = []
    with _registry_errors(uri):
        client = _client(uri, create=False)
        for version in _versions(client, task):
            identity = dict(version.tags).get("run_identity")
            if identity and str(Path(identity).resolve()) in trials:
                for name, value in tags.items():
                    client.set_model_version_tag(task, version.version, name, value)
                tagged.append(str(version.version))
    return tagged


def sweep_run(client, uri: str, campaign: str, sweep_dir: Path) -> str:
    """The MLflow run of the sweep in ``sweep_dir`` in experiment ``campaign``, created on first
    use; its id is kept in the sweep folder (``SWEEP_RUNS``, per URI and campaign), so every trial
    and the sweep's end find the same run (the sweep's start removes an earlier sweep's file:
    federation.coordinator.tuning.SweepAccounting)."""
    from federation.core import atomic
    from federation.core.run_layout import SWEEP_RUNS, read_json

    path = Path(sweep_dir) / SWEEP_RUNS
    known = read_json(path) or {}
    slot = f"{uri} {campaign}"
    if slot in known:
        return str(known[slot])
    folder = Path(sweep_dir).resolve()
    tags = {"campaign": campaign, SWEEP_DIR: str(folder)}
    experiment = _experiment(client, campaign, uri)
    run_id = client.create_run(experiment, run_name=f"sweep {folder.name}", tags=tags).info.run_id
    atomic.write_json(path, known | {slot: run_id})
    return run_id


def record_sweep(
    uri: str, campaign: str, summary: dict[str, Any], summary_path: Path, *, status: str | None = None
) -> str:
    """The sweep's own MLflow run (the parent of its trials' runs), after a trial: its
    ``sweep_summary.json``, what the whole search spent per site so far (metrics
    ``search_epsilon/SITE`` and ``search_site_epsilon/SITE``, step = the trials so far) and the
    chosen trial (tags ``best_trial``, ``best_run_id``, ``best_command``; metric
    ``best/validation_loss``). ``status`` (FINISHED, FAILED) ends the run; returns its id."""
    from mlflow.entities import Metric, RunTag
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    from federation.coordinator.campaign_record import key

    trials = summary.get("trials") or []
    step, now = len(trials), int(time.time() * 1000)
    metrics = [
        Metric("trials", float(step), now, step),
        Metric("trials_complete", float(sum(t.get("status") == "complete" for t in trials)), now, step),
    ]
    for site, spent in sorted(((summary.get("privacy") or {}).get("sites") or {}).items()):
        for name, field in ((SEARCH_EPSILON, "epsilon_search"), (SEARCH_SITE_EPSILON, "epsilon_site_total")):
            value = spent.get(field)
            if value is not None and math.isfinite(float(value)):  # DP off: unbounded, not a number
                metrics.append(Metric(key(name, site), float(value), now, step))
    tags = {SEARCH_TRIALS: str(step), "objective": str(summary.get("objective"))}
    best = summary.get("best") or {}
    with _registry_errors(uri):
        client = _client(uri, create=True)
        run_id = sweep_run(client, uri, campaign, Path(summary_path).parent)
        if best:
            metrics.append(Metric("best/validation_loss", float(best["validation_loss"]), now, step))
            tags |= {BEST_TRIAL: str(best["trial"]), "best_command": str(best.get("command"))}
            children = _sweep_trials(client, run_id)
            if str(best["trial"]) in children:
                tags[BEST_RUN_ID] = children[str(best["trial"])]
        run_tags = [RunTag(k, v[:MAX_TAG_VAL_LENGTH]) for k, v in sorted(tags.items())]
        client.log_batch(run_id, metrics=metrics, tags=run_tags)
        client.log_artifact(run_id, str(summary_path))
        if status is not None:
            client.set_terminated(run_id, status)
    return run_id


def _sweep_trials(client, sweep_run_id: str) -> dict[str, str]:
    """The trials logged as children of a sweep's run: job folder name -> run id."""
    experiment = client.get_run(sweep_run_id).info.experiment_id
    found = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{sweep_run_id}'")
    return {r.data.tags[SWEEP_TRIAL]: r.info.run_id for r in found if SWEEP_TRIAL in r.data.tags}


def _under(mapping: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in sorted(mapping.items()) if k.startswith(prefix)}


def _versions(client, task: str) -> list:
    return list(client.search_model_versions(f"name='{task}'"))


def _experiment(client, campaign: str, uri: str) -> str:
    """The experiment of ``campaign`` (created on first use; its artifacts beside a SQLite file)."""
    found = client.get_experiment_by_name(campaign)
    if found is not None:
        return found.experiment_id
    root = _artifact_root(uri)
    folder = re.sub(r"[^A-Za-z0-9_-]", "_", campaign)  # never a path out of the artifact root
    location = None if root is None else (root / folder).resolve().as_uri()
    return client.create_experiment(campaign, artifact_location=location)


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len(_SQLITE) :]) if uri.startswith(_SQLITE) else None


def _artifact_root(uri: str) -> Path | None:
    """``lhsfed-registry-artifacts/`` beside ``lhsfed-registry.db`` (a server keeps its own)."""
    db = _sqlite_file(uri)
    return None if db is None else db.parent / f"{db.stem}-artifacts"


def _client(uri: str, *, create: bool):
    """An MlflowClient on ``uri``; reading never creates an empty SQLite registry."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):  # database set-up chatter; the console keeps one line
        logging.getLogger(name).setLevel(logging.WARNING)
    db = _sqlite_file(uri)
    if db is not None and not create and not db.is_file():
        raise ConfigError(
            f"no registry at {uri} ({db.resolve()} does not exist): run a campaign first "
            "(lhsfed-train campaign=NAME) or give the registry's URI (--uri / registry.uri)"
        )
    if db is not None and create:
        db.resolve().parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def _registry_errors(uri: str):
    """MLflow, database and connection failures as one ConfigError line naming the URI."""
    from mlflow.exceptions import MlflowException

    failures: tuple[type[BaseException], ...] = (MlflowException, OSError)
    with contextlib.suppress(ImportError):
        from requests.exceptions import RequestException
        from sqlalchemy.exc import SQLAlchemyError

        failures += (RequestException, SQLAlchemyError)
    try:
        yield
    except failures as err:
        reason = " ".join(str(getattr(err, "message", None) or err).split())[:300]
        raise ConfigError(
            f"the registry {uri} cannot be used ({type(err).__name__}: {reason}); check that it is "
            "reachable and writable (registry.uri / --uri)"
        ) from None


def download_run_folder(ref: str, uri: str, folder: Path) -> ResolvedModel:
    """The version ``ref`` names, its logged files laid out as a run folder in ``folder``.

    model.pt, metrics.jsonl, summary.json, .hydra/config.yaml and, when logged, the
    evaluation: what ``lhsfed export`` needs to bake the model and write its card, so a site
    can score with a registered model (``lhsfed predict registry:TASK@champion``).
    """
    import shutil
    import tempfile

    from mlflow.exceptions import MlflowException

    from federation.coordinator.campaign_record import ARTIFACTS
    from federation.core.run_layout import HYDRA_CONFIG, METRICS, MODEL

    task, alias, number = parse_reference(ref)
    required = (MODEL, METRICS, str(HYDRA_CONFIG))
    with _registry_errors(uri), tempfile.TemporaryDirectory() as scratch:
        client = _client(uri, create=False)
        version = _version(client, ref, uri, task, alias, number)
        for name, artifact_folder in ARTIFACTS.items():
            target = Path(folder) / name
            artifact = f"{artifact_folder}/{target.name}" if artifact_folder else target.name
            try:
                local = client.download_artifacts(version.run_id, artifact, scratch)
            except MlflowException:
                if name in required:
                    raise ConfigError(f"{ref}: version {version.version}'s run lacks {artifact}") from None
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(local, target)
    return ResolvedModel(Path(folder) / MODEL, task, str(version.version))


def latest_drift(uri: str, task: str, version: str, folder: Path) -> Path | None:
    """The drift check last logged on ``version``'s run (``lhsfed drift``), copied into
    ``folder`` as drift.json; None when it has none."""
    import shutil
    import tempfile

    from mlflow.exceptions import MlflowException

    from federation.core.run_layout import DRIFT

    with _registry_errors(uri), tempfile.TemporaryDirectory() as scratch:
        client = _client(uri, create=False)
        run_id = client.get_model_version(task, str(version)).run_id
        try:
            local = client.download_artifacts(run_id, f"{DRIFT_ARTIFACT}/{DRIFT}", scratch)
        except MlflowException:
            return None
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(local, Path(folder) / DRIFT))
