"""Read back a finished run folder: its settings, a round's global model and the sites' data.

A run folder holds ``.hydra/config.yaml`` (the coordinator's composed config), ``model.pt``
and ``rounds/round_NNN.pt`` (weights plus what rebuilds the model), ``metrics.jsonl`` and
``summary.json``. Everything a modeler command needs is read through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.core.data import SiteData, load_site, site_file
from federation.core.dataspec import DatasetSpec, spec_from_json
from federation.core.errors import ConfigError, DataError
from federation.core.model import ModelSpec, RiskModel, build_model
from federation.core.records import RoundRecord, read_round_records
from federation.core.run_layout import (
    HYDRA_CONFIG,
    METRICS,
    MODEL,
    ROUNDS,
    SUMMARY,
    SWEEP_SUMMARY,
    read_json,
    round_model,
)
from federation.core.safe_load import load_weights_only
from federation.core.settings import RunSettings, flatten_config

_REWRITE = "use the run folder lhsfed-train wrote (or run it again); do not load this file"


@dataclass(frozen=True)
class SavedModel:
    """A finished run's global model as saved after one round, rebuilt and ready to predict."""

    model: RiskModel
    spec: ModelSpec
    dataset: DatasetSpec
    feature_names: list[str]
    round: int
    path: Path


def require_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / MODEL).is_file():
        raise DataError(
            f"{run_dir}: not a finished run folder (no {MODEL}): the run has not "
            "finished a round; pass the folder lhsfed-train printed as 'run folder:'"
        )
    return run_dir


def run_config(run_dir: Path) -> dict[str, Any]:
    """The coordinator's composed Hydra config of the run, as plain data, interpolations
    resolved as the launcher resolved them for the run's apps."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / HYDRA_CONFIG
    if not path.is_file():
        raise ConfigError(f"{path} not found: {run_dir} is not a run folder of lhsfed-train")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def load_settings(run_dir: Path) -> RunSettings:
    """The typed settings the run's apps trained with."""
    return RunSettings.from_run_config(flatten_config(run_config(run_dir)))


def saved_model_path(run_dir: Path, round_number: int | None = None) -> Path:
    """``model.pt`` (the selected round; before selection existed, the last) or
    ``rounds/round_NNN.pt``; a missing round names those there are."""
    run_dir = require_run_dir(run_dir)
    if round_number is None:
        return run_dir / MODEL
    path = run_dir / round_model(round_number)
    if not path.is_file():
        known = sorted(int(p.stem.split("_")[1]) for p in (run_dir / ROUNDS).glob("round_*.pt"))
        raise DataError(f"{path}: no checkpoint for round {round_number}; rounds saved: {known}")
    return path


def load_saved_model(path: Path) -> SavedModel:
    """A saved global model, loaded with ``weights_only=True``; a file that does not load that
    way, or does not rebuild the model, is refused with one line naming it."""
    payload = load_weights_only(path, fix=_REWRITE)
    try:
        return _rebuild(payload, Path(path))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        detail = (str(err).splitlines() or [""])[0]
        raise DataError(
            f"{path}: not a global model saved by lhs-federation ({type(err).__name__}: {detail}); {_REWRITE}"
        ) from None


def _rebuild(payload: dict[str, Any], path: Path) -> SavedModel:
    spec = ModelSpec(**payload["model_spec"])
    model = build_model(spec)
    model.load_state_dict(payload["state_dict"])
    return SavedModel(
        model.eval(),
        spec,
        spec_from_json(payload["dataset_spec"]),
        list(payload["feature_names"]),
        int(payload["round"]),
        path,
    )


def sites_data(dataset: DatasetSpec, data_dir: Path | None = None) -> list[SiteData]:
    """Every site's encoded train/validation/test split, exactly as the sites split it (seeded)."""
    return [load_site(site_file(dataset, name, data_dir), dataset, name) for name in dataset.site_names]


def federation_mode(run_dir: Path) -> str:
    """``simulation`` or ``deployment``: the run's ``federation.mode``."""
    return str((run_config(run_dir).get("federation") or {}).get("mode") or "simulation")


def data_dir_of(run_dir: Path) -> Path | None:
    """The folder the simulated sites read (None: the embedded copy)."""
    folder = (run_config(run_dir).get("federation") or {}).get("data_dir")
    return Path(folder) if folder else None


def read_summary(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / SUMMARY) or {}


def search_privacy(run_dir: Path) -> dict[str, Any] | None:
    """What the sweep this run was a trial of spent, per site (the sweep's
    ``sweep_summary.json`` beside the trial folders: every trial's ledger rows, and the site's
    lifetime ε after the search); None for a run that was no sweep's trial."""
    sweep = read_json(Path(run_dir).parent / SWEEP_SUMMARY)
    if not isinstance(sweep, dict):
        return None
    trials = {str(Path(t["run_dir"]).resolve()) for t in sweep.get("trials") or []}
    if str(Path(run_dir).resolve()) not in trials:
        return None
    sites = (sweep.get("privacy") or {}).get("sites") or {}
    return {
        "trials": len(trials),
        "summary": str((Path(run_dir).parent / SWEEP_SUMMARY).resolve()),
        "epsilon": {site: v.get("epsilon_search") for site, v in sites.items()},
        "site_epsilon": {site: v.get("epsilon_site_total") for site, v in sites.items()},
    }


def selected_round(run_dir: Path) -> int | None:
    """The round the run handed out (``summary.json``'s ``selection``; None: an older run)."""
    selection = read_summary(run_dir).get("selection") or {}
    return None if selection.get("round") is None else int(selection["round"])


def round_record(run_dir: Path, round_number: int | None = None) -> RoundRecord:
    """One round's record (default: the selected round, or the last for a run from before
    selection); a missing round names those there are."""
    records = read_round_records(run_dir)
    if not records:
        raise DataError(f"{Path(run_dir) / METRICS}: no round was recorded")
    if round_number is None:
        round_number = selected_round(run_dir)
    if round_number is None:
        return records[-1]
    found = [r for r in records if r.round == round_number]
    if not found:
        raise DataError(
            f"{run_dir}: no round {round_number} in {METRICS}; rounds recorded: {[r.round for r in records]}"
        )
    return found[0]
