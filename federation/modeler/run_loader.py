"""Read back a finished run folder: its settings, a round's global model and the sites' data.

A run folder holds ``.hydra/config.yaml`` (the coordinator's composed config), ``model.pt``
and ``rounds/round_NNN.pt`` (weights plus what rebuilds the model), ``metrics.jsonl`` and
``summary.json``. Everything a modeler command needs is read through this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation.core.data import SiteData, load_site, site_file
from federation.core.dataspec import DatasetSpec, spec_from_json
from federation.core.errors import ConfigError, DataError
from federation.core.model import ModelSpec, RiskModel, build_model
from federation.core.safe_load import load_weights_only
from federation.core.settings import RunSettings, flatten_config
from server.run_folder import MODEL, ROUNDS, SUMMARY, read_rounds

HYDRA_CONFIG = Path(".hydra") / "config.yaml"
_REWRITE = "use the run folder lhsfed-train wrote (or run it again); do not load this file"


@dataclass(frozen=True)
class Checkpoint:
    """A global model as saved after one round, rebuilt and ready to predict."""

    model: RiskModel
    spec: ModelSpec
    dataset: DatasetSpec
    feature_names: list[str]
    round: int
    path: Path


def require_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / MODEL).is_file():
        raise DataError(f"{run_dir}: not a finished run folder (no {MODEL}); "
                        "pass the folder lhsfed-train printed as 'run folder:'")
    return run_dir


def run_config(run_dir: Path) -> dict[str, Any]:
    """The coordinator's composed Hydra config of the run, as plain data."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / HYDRA_CONFIG
    if not path.is_file():
        raise ConfigError(f"{path}: missing; the run folder must be one written by lhsfed-train")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def load_settings(run_dir: Path) -> RunSettings:
    """The typed settings the run's apps trained with."""
    return RunSettings.from_run_config(flatten_config(run_config(run_dir)))


def checkpoint_path(run_dir: Path, round_number: int | None = None) -> Path:
    """``model.pt`` (the selected round; before selection existed, the last) or
    ``rounds/round_NNN.pt``; a missing round names those there are."""
    run_dir = require_run_dir(run_dir)
    if round_number is None:
        return run_dir / MODEL
    path = run_dir / ROUNDS / f"round_{round_number:03d}.pt"
    if not path.is_file():
        known = sorted(int(p.stem.split("_")[1]) for p in (run_dir / ROUNDS).glob("round_*.pt"))
        raise DataError(f"{path}: no checkpoint for round {round_number}; rounds saved: {known}")
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """A saved global model, loaded with ``weights_only=True``; a file that does not load that
    way, or does not rebuild the model, is refused with one line naming it."""
    payload = load_weights_only(path, fix=_REWRITE)
    try:
        return _rebuild(payload, Path(path))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        detail = (str(err).splitlines() or [""])[0]
        raise DataError(f"{path}: not a global model saved by lhs-federation "
                        f"({type(err).__name__}: {detail}); {_REWRITE}") from None


def _rebuild(payload: dict[str, Any], path: Path) -> Checkpoint:
    spec = ModelSpec(**payload["model_spec"])
    model = build_model(spec)
    model.load_state_dict(payload["state_dict"])
    return Checkpoint(model.eval(), spec, spec_from_json(payload["dataset_spec"]),
                      list(payload["feature_names"]), int(payload["round"]), path)


def sites_data(dataset: DatasetSpec, data_dir: Path | None = None) -> list[SiteData]:
    """Every site's encoded train/validation/test split, exactly as the sites split it (seeded)."""
    return [load_site(site_file(dataset, name, data_dir), dataset, name)
            for name in dataset.site_names]


def federation_mode(run_dir: Path) -> str:
    """``simulation`` or ``deployment``: the run's ``federation.mode``."""
    return str((run_config(run_dir).get("federation") or {}).get("mode") or "simulation")


def data_dir_of(run_dir: Path) -> Path | None:
    """The folder the simulated sites read (None: the embedded copy)."""
    folder = (run_config(run_dir).get("federation") or {}).get("data_dir")
    return Path(folder) if folder else None


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


def read_round_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every round's record from ``metrics.jsonl`` (train metrics, ε, evaluation)."""
    return read_rounds(run_dir)


def selected_round(run_dir: Path) -> int | None:
    """The round the run handed out (``summary.json``'s ``selection``; None: an older run)."""
    selection = read_summary(run_dir).get("selection") or {}
    return None if selection.get("round") is None else int(selection["round"])


def round_record(run_dir: Path, round_number: int | None = None) -> dict[str, Any]:
    """One round's record (default: the selected round, or the last for a run from before
    selection); a missing round names those there are."""
    records = read_round_records(run_dir)
    if not records:
        raise DataError(f"{Path(run_dir) / 'metrics.jsonl'}: no round was recorded")
    if round_number is None:
        round_number = selected_round(run_dir)
    if round_number is None:
        return records[-1]
    found = [r for r in records if r["round"] == round_number]
    if not found:
        raise DataError(f"{run_dir}: no round {round_number} in metrics.jsonl; "
                        f"rounds recorded: {[r['round'] for r in records]}")
    return found[0]
