"""``lhsfed drift TASK``: has any site's data moved since the champion was trained?

The champion comes from the registry: its MLflow run's ``run_identity`` tag names the run
the sites know it by, and its composed config (the run's ``config`` artifact, else the run
folder) gives the task's data spec. One Flower run of ``run.task=drift`` (server/drift.py)
asks every site; each answers against its own reference of that run. ``drift.json`` is
written in the out folder and logged to the champion's MLflow run (artifact ``drift/``),
where the next campaign, warm-started from that version, finds it in its lineage.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from federation.coordinator.registry import CHAMPION, DRIFT_ARTIFACT, _client, _registry_errors, _version
from federation.core.errors import ConfigError
from federation.core.run_layout import DRIFT, HYDRA_CONFIG

DRIFT_JSON = DRIFT
CONFIG_ARTIFACT = f"config/{HYDRA_CONFIG.name}"  # campaign_record.ARTIFACTS


@dataclass(frozen=True)
class Champion:
    """The champion version of a task: its MLflow run, the run identity, the data spec."""

    task: str
    version: str
    run_id: str
    run_identity: str
    data: dict[str, Any]


def default_out(task: str) -> Path:
    """``drift/TASK-<UTC time>`` under the runs root (``LHSFED_RUNS_ROOT``, else outputs)."""
    from federation.coordinator.hydra_folder import runs_root

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return runs_root() / "drift" / f"{task}-{stamp}"


def _run_data_spec(client, run_id: str, run_identity: str) -> dict[str, Any] | None:
    """The champion run's composed ``data`` block: the config artifact, else its run folder."""
    from mlflow.exceptions import MlflowException
    from omegaconf import OmegaConf

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = Path(client.download_artifacts(run_id, CONFIG_ARTIFACT, folder))
        except (MlflowException, OSError):
            path = Path(run_identity) / HYDRA_CONFIG
        if not path.is_file():
            return None
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True).get("data")


def champion_of(task: str, uri: str) -> Champion:
    """The champion of ``task`` in the registry at ``uri``; one line if it cannot be used."""
    with _registry_errors(uri):
        client = _client(uri, create=False)
        version = _version(client, f"registry:{task}@{CHAMPION}", uri, task, CHAMPION, None)
        identity = version.tags.get("run_identity") or client.get_run(version.run_id).data.tags.get(
            "run_identity"
        )
        if not identity:
            raise ConfigError(
                f"task {task} champion (version {version.version}) has no run_identity tag, so the "
                "sites cannot tell which run's reference to use; register a new campaign and promote it"
            )
        data = _run_data_spec(client, version.run_id, identity)
    if not data:
        raise ConfigError(
            f"task {task} champion (version {version.version}): its data spec is neither in its MLflow "
            f"run's {CONFIG_ARTIFACT} artifact nor in {Path(identity) / HYDRA_CONFIG}"
        )
    return Champion(task, str(version.version), version.run_id, identity, data)


def drift_run_config(
    champion: Champion, thresholds: dict[str, float], out: Path, overrides: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run config, plain config) of the drift run: the overrides, the champion's data spec."""
    from federation.coordinator.flwr_app_config import compose_config
    from federation.core.settings import flatten_config

    for item in overrides:
        if item.split("=", 1)[0].lstrip("+~") == "data" or item.startswith(("data.", "+data.")):
            raise ConfigError(
                f"override {item!r}: a drift run's data spec is the champion's (version "
                f"{champion.version}); remove it"
            )
    plain = compose_config(overrides)
    plain["data"], plain["output_dir"] = champion.data, str(out)
    args = {
        "task": champion.task,
        "run_identity": champion.run_identity,
        "champion_version": champion.version,
        "thresholds": thresholds,
    }
    return flatten_config(plain) | {"run.task": "drift", "run.task_args": json.dumps(args)}, plain


def log_drift(uri: str, champion: Champion, path: Path) -> None:
    """drift.json as an artifact of the champion's MLflow run (``drift/drift.json``)."""
    with _registry_errors(uri):
        _client(uri, create=False).log_artifact(champion.run_id, str(path), artifact_path=DRIFT_ARTIFACT)


def check_drift(
    task: str, *, uri: str, thresholds: dict[str, float], out: Path | None, overrides: list[str]
) -> tuple[dict[str, Any], Path]:
    """Run the drift check of ``task``'s champion; returns drift.json's content and its path."""
    from federation.coordinator.hydra_folder import query_folder, refuse_outside_runs_root
    from federation.coordinator.launcher import quiet_libraries, run_flower
    from federation.core.settings import RunSettings

    out = Path(out) if out is not None else default_out(task)
    refuse_outside_runs_root(out, "--out")
    champion = champion_of(task, uri)
    if (out / DRIFT_JSON).exists():
        raise ConfigError(f"--out {out} already holds a {DRIFT_JSON}; give a new folder")
    run_config, plain = drift_run_config(champion, thresholds, out.resolve(), overrides)
    settings = RunSettings.from_run_config(run_config)
    quiet_libraries()
    with query_folder(out):
        run_flower(run_config, settings, plain.get("federation") or {}, out.resolve())
    path = out / DRIFT_JSON
    if not path.is_file():
        raise ConfigError(f"the drift run wrote no {path}; see its log in {out}")
    log_drift(uri, champion, path)
    return json.loads(path.read_text()), path
