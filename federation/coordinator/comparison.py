"""``lhsfed compare TASK``: champion vs challenger on every site, as one Flower run.

The champion is ``registry:TASK@champion``; the challenger ``registry:TASK@challenger`` or a
finished run folder's selected model (``--challenger RUN_DIR``). Both must encode the same
features and label, or the comparison is refused in one line before any site is contacted.
The run is a ``run.task=compare`` run of the usual apps (server.comparison), in the mode the
overrides choose (``federation.runtime=inprocess``, ``federation=deployment ...``), with the
champion's dataset spec. Each model travels with the identity of its training run: a site
compares only models it was itself sent in runs it trained in (client.comparison).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.coordinator.warm_start import _load_parent, _resolve
from federation.core.errors import ConfigError, DataError
from federation.core.run_layout import read_json
from federation.core.settings import RunSettings, flatten_config
from federation.core.weights_text import encode_state_dict

COMPARISON_JSON = "comparison.json"  # server.comparison.COMPARISON (the server layer writes it)
DEFAULT_OUT = Path("outputs") / "comparisons"


@dataclass(frozen=True)
class Compared:
    """One model of the comparison: where it came from and what the sites are sent."""

    source: str  # registry:TASK@ALIAS or the run folder
    version: str | None  # the registry version (None: a run folder)
    run_id: str | None  # its MLflow run (None: a run folder)
    run_identity: str  # the name its training run's sites know it by
    payload: dict  # warm_start._load_parent's: state_dict, model_spec, dataset_spec, feature_names

    def task_args(self) -> dict[str, Any]:
        return {
            "weights": encode_state_dict(self.payload["state_dict"]),
            "run_identity": self.run_identity,
            "model_spec": self.payload["model_spec"].to_dict(),
            "source": self.source,
            "version": self.version,
        }


def registry_model(task: str, alias: str, uri: str, download_dir: Path) -> Compared:
    """``registry:TASK@ALIAS`` with its MLflow run and the run identity tagged on it."""
    from federation.coordinator.registry import _client, _registry_errors

    source = f"registry:{task}@{alias}"
    path, version = _resolve(source, uri, download_dir)
    with _registry_errors(uri):
        found = _client(uri, create=False).get_model_version(task, version)
    run_identity = dict(found.tags).get("run_identity")
    if not run_identity:
        raise ConfigError(
            f"{source} (version {version}) has no run_identity tag: the sites cannot tell which run "
            "it came from; register it again with a campaign of this version (lhsfed-train campaign=NAME)"
        )
    return Compared(source, str(version), found.run_id, run_identity, _load_parent(source, path))


def run_dir_model(run_dir: Path) -> Compared:
    """A finished run folder's selected model; its identity is the folder, as the run named it."""
    source = str(run_dir)
    path, _ = _resolve(source, "", Path(run_dir))
    return Compared(source, None, None, os.path.abspath(run_dir), _load_parent(source, path))


def feature_difference(champion: Compared, challenger: Compared) -> str | None:
    """The first way the two models' inputs differ (label, then encoded columns)."""
    old, new = champion.payload["dataset_spec"], challenger.payload["dataset_spec"]
    if old.label.column != new.label.column:
        return f"the champion predicts {old.label.column!r}, the challenger {new.label.column!r}"
    was, now = list(champion.payload["feature_names"]), list(challenger.payload["feature_names"])
    for position, (a, b) in enumerate(zip(was, now), start=1):
        if a != b:
            return f"encoded column {position} is {a!r} in the champion but {b!r} in the challenger"
    if len(was) != len(now):
        return f"the champion encodes {len(was)} columns, the challenger {len(now)}"
    return None


def comparison_config(
    task: str,
    champion: Compared,
    challenger: Compared,
    overrides: list[str],
    out_dir: Path,
    threshold: float = 0.5,
) -> tuple[dict[str, Any], RunSettings, dict[str, Any]]:
    """(run config, settings, federation section) of the compare run, with the champion's data."""
    from federation.coordinator.flwr_app_config import compose_config

    spec = champion.payload["dataset_spec"]
    chosen = any(o.split("=", 1)[0].lstrip("+~") == "data" for o in overrides)
    try:
        plain = compose_config(overrides)
    except Exception as err:  # noqa: BLE001 - Hydra's errors: one line naming the override
        raise ConfigError(f"overrides {' '.join(overrides)}: {' '.join(str(err).split())[:300]}") from None
    if not chosen:  # the champion's own spec, saved with it (also one not in configs/data)
        plain["data"] = json.loads(spec.to_json())
    plain["output_dir"] = str(out_dir)
    args = {
        "task": task,
        "champion": champion.task_args(),
        "challenger": challenger.task_args(),
        "threshold": float(threshold),  # net benefit's, for the promotion rule
    }
    run_config = flatten_config(plain) | {"run.task": "compare", "run.task_args": json.dumps(args)}
    settings = RunSettings.from_run_config(run_config)
    if settings.data.encoded_feature_names() != list(champion.payload["feature_names"]):
        raise ConfigError(
            f"the run's data spec {settings.data.name!r} does not encode the champion's features; "
            f"pass the champion's spec (data={spec.name}) or no data= override"
        )
    return run_config, settings, plain.get("federation") or {}


def default_out(task: str) -> Path:
    """``comparisons/TASK-<UTC time>`` under the runs root (``LHSFED_RUNS_ROOT``, else outputs)."""
    from federation.coordinator.hydra_folder import runs_root

    return runs_root() / DEFAULT_OUT.name / f"{task}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def candidates(task: str, challenger_dir: Path | None, uri: str, tmp: Path) -> tuple[Compared, Compared]:
    """The champion and the challenger, checked to encode the same inputs."""
    from federation.coordinator.registry import CHALLENGER, CHAMPION

    champion = registry_model(task, CHAMPION, uri, tmp / CHAMPION)
    if challenger_dir is not None:
        challenger = run_dir_model(Path(challenger_dir))
    else:
        challenger = registry_model(task, CHALLENGER, uri, tmp / CHALLENGER)
    difference = feature_difference(champion, challenger)
    if difference:
        raise ConfigError(f"compare {task}: {difference}; compare two models of the same task's features")
    return champion, challenger


def run_compare(
    task: str,
    *,
    challenger_dir: Path | None,
    uri: str,
    out_dir: Path | None,
    overrides: list[str],
    threshold: float = 0.5,
) -> tuple[dict[str, Any], Path, Compared]:
    """Run the comparison (net benefit at ``threshold``); returns (comparison.json, its
    folder, the challenger)."""
    from federation.coordinator.hydra_folder import query_folder, refuse_outside_runs_root
    from federation.coordinator.launcher import quiet_libraries, run_flower

    out = Path(os.path.abspath(out_dir or default_out(task)))
    refuse_outside_runs_root(out, "--out")
    if (out / COMPARISON_JSON).exists():
        raise ConfigError(f"{out} already holds a comparison ({COMPARISON_JSON}); choose another --out")
    with tempfile.TemporaryDirectory(prefix="lhsfed-compare-") as tmp:
        champion, challenger = candidates(task, challenger_dir, uri, Path(tmp))
    if not 0 < float(threshold) < 1:
        raise ConfigError(f"--threshold {threshold}: give a risk in (0, 1), e.g. 0.2")
    run_config, settings, federation = comparison_config(
        task, champion, challenger, overrides, out, threshold
    )
    quiet_libraries()
    with query_folder(out):
        run_flower(run_config, settings, federation, out)
    document = read_json(out / COMPARISON_JSON)
    if document is None:
        raise DataError(
            f"the comparison ran but {out / COMPARISON_JSON} is not here (a deployment writes it into "
            "the run folder on the SuperLink's host); copy it from there"
        )
    return document, out, challenger


def log_to_challenger(uri: str, challenger: Compared, files: list[Path], document: dict) -> bool:
    """comparison.json and the page as artifacts, the pooled difference as a metric, on the
    challenger version's MLflow run (False: the challenger is a run folder, nothing logged)."""
    if challenger.run_id is None:
        return False
    from federation.coordinator.registry import _client, _registry_errors

    with _registry_errors(uri):
        client = _client(uri, create=False)
        for path in files:
            client.log_artifact(challenger.run_id, str(path), artifact_path="comparison")
        pooled = document.get("pooled") or {}
        difference = pooled.get("auroc_difference")
        if difference is not None:
            client.log_metric(challenger.run_id, "comparison/pooled/auroc_difference", float(difference))
        for bound, value in zip(("low", "high"), pooled.get("auroc_difference_ci") or []):
            if value is not None:
                client.log_metric(challenger.run_id, f"comparison/pooled/auroc_difference_ci_{bound}", value)
    return True
