"""``lhsfed-train init=``: start a campaign from an earlier model, or refuse in one line.

``init=RUN_DIR`` takes that run's selected ``model.pt``; ``init=registry:TASK@ALIAS`` (or
``registry:TASK/VERSION``) the registered model, fetched by
:func:`federation.coordinator.registry.resolve_model` into a temporary folder. The model
keeps its own preprocessing (the standardization buffers are in its state dict): its weights
only mean something on inputs scaled the way they were trained on. So a model whose encoded
inputs differ from the run's dataset spec (a feature, its levels, their order, the label) or
whose architecture differs is refused before any site is contacted and before anything is
written, naming the first difference. The weights travel in the run config
(:mod:`federation.core.weights_text`), the one input the ServerApp reads in every mode.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from federation.core.dataspec import DatasetSpec, FeatureSpec, spec_from_json, value_text
from federation.core.errors import ConfigError, DataError, LhsFedError
from federation.core.model import ModelSpec, build_model
from federation.core.run_layout import MODEL
from federation.core.safe_load import load_weights_only
from federation.core.settings import RunSettings, model_spec
from federation.core.weights_text import KEY, encode_state_dict

REGISTRY_PREFIX = "registry:"
DEFAULT_REGISTRY_URI = "sqlite:///lhsfed-registry.db"
# What changes a feature's encoded columns or their values (range and unit do not).
ENCODING_FIELDS = ("type", "levels", "drop_first", "missing_if")
_FIX = "warm-start from a model of this task's features and model, or leave init unset"


@dataclass(frozen=True)
class WarmStart:
    """The parent model of a warm start, ready for the run config."""

    source: str  # what init= said
    weights: str  # federation.core.weights_text text of its state dict
    round: int  # the parent run's round this model is from
    parent_version: str | None = None  # the registry version, when init= was a registry reference

    def run_config(self) -> dict[str, str]:
        """The run-config entry the ServerApp starts from (server.federation_loop)."""
        return {KEY: self.weights}


def prepare_warm_start(
    init: str | None, settings: RunSettings, *, registry_uri: str | None
) -> WarmStart | None:
    """The checked parent model of ``init`` (None without one); a ConfigError/DataError line
    naming ``init`` otherwise. Writes nothing: a registry download goes to a temporary folder."""
    if not init:
        return None
    source = str(init)
    with tempfile.TemporaryDirectory(prefix="lhsfed-init-") as tmp:
        path, version = _resolve(source, registry_uri or DEFAULT_REGISTRY_URI, Path(tmp))
        payload = _load_parent(source, path)
    difference = first_difference(payload, settings)
    if difference:
        raise ConfigError(f"init {source}: {difference}; {_FIX}")
    model = build_model(model_spec(settings), seed=settings.seed)
    model.load_state_dict(payload["state_dict"])  # shapes follow from the checks above
    return WarmStart(source, encode_state_dict(model.state_dict()), int(payload.get("round", 0)), version)


def _resolve(source: str, uri: str, download_dir: Path) -> tuple[Path, str | None]:
    """(local model.pt, registry version or None) for ``init=``."""
    if not source.startswith(REGISTRY_PREFIX):
        folder = Path(source).expanduser()
        return (folder / MODEL if folder.is_dir() else folder), None
    try:
        from federation.coordinator.registry import resolve_reference
    except ImportError as err:
        raise ConfigError(
            f"init {source}: the model registry is not available ({err}); install lhs-federation "
            "with its registry extra, or warm-start from a run folder (init=RUN_DIR)"
        ) from None
    resolved = resolve_reference(source, uri, download_dir)
    return Path(resolved.path), str(resolved.version)


def _load_parent(source: str, path: Path) -> dict:
    if not path.is_file():
        raise DataError(
            f"init {source}: {path} not found: init= takes a finished run folder (its {MODEL}) "
            "or registry:TASK@ALIAS; give the folder lhsfed-train printed as 'run folder:'"
        )
    payload = load_weights_only(path, fix="warm-start from a run folder lhsfed-train wrote")
    missing = [k for k in ("state_dict", "model_spec", "dataset_spec", "feature_names") if k not in payload]
    if missing:
        raise DataError(f"init {source}: {path} is not a saved global model (it lacks {missing}); {_FIX}")
    try:
        payload["model_spec"] = ModelSpec(**payload["model_spec"])
        payload["dataset_spec"] = spec_from_json(str(payload["dataset_spec"]))
    except (TypeError, LhsFedError, ValueError) as err:
        raise DataError(
            f"init {source}: {path} holds no readable model or dataset spec ({err}); {_FIX}"
        ) from None
    return payload


def first_difference(payload: dict, settings: RunSettings) -> str | None:
    """The first way the parent model's inputs or architecture differ from the run's (pure)."""
    parent, run = payload["dataset_spec"], settings.data
    return (
        _label_difference(parent, run)
        or _features_difference(parent.features, run.features)
        or _columns_difference(list(payload["feature_names"]), run.encoded_feature_names())
        or _model_difference(payload["model_spec"], model_spec(settings))
    )


def _label_difference(parent: DatasetSpec, run: DatasetSpec) -> str | None:
    if parent.label.column != run.label.column:
        return f"the model predicts {parent.label.column!r}, the run's spec's label is {run.label.column!r}"
    for name in ("positive_values", "negative_values"):
        was, now = getattr(parent.label, name), getattr(run.label, name)
        if was != now:
            return (
                f"label {parent.label.column!r}: {name} {_text(was)} in the model differs from "
                f"the run's spec: {_text(now)}"
            )
    if parent.standardize != run.standardize:
        return f"the model's standardize={parent.standardize} differs from the run's spec: {run.standardize}"
    return None


def _features_difference(parent: tuple[FeatureSpec, ...], run: tuple[FeatureSpec, ...]) -> str | None:
    for position, (old, new) in enumerate(zip(parent, run), start=1):
        if old.name != new.name:
            return f"feature {position} is {old.name!r} in the model but {new.name!r} in the run's spec"
        for field_name in ENCODING_FIELDS:
            was, now = getattr(old, field_name), getattr(new, field_name)
            if was != now:
                return (
                    f"feature {old.name!r}: {field_name} {_text(was)} in the model differs from the "
                    f"run's spec: {_text(now)}"
                )
    if len(parent) != len(run):
        longer, where = (parent, "the model") if len(parent) > len(run) else (run, "the run's spec")
        return (
            f"the model has {len(parent)} features, the run's spec {len(run)} "
            f"({longer[min(len(parent), len(run))].name!r} is only in {where})"
        )
    return None


def _columns_difference(parent: list[str], run: list[str]) -> str | None:
    if parent == run:
        return None
    position = next((i for i, (a, b) in enumerate(zip(parent, run)) if a != b), min(len(parent), len(run)))
    was = parent[position] if position < len(parent) else "(none)"
    now = run[position] if position < len(run) else "(none)"
    return f"encoded column {position + 1} is {was!r} in the model but {now!r} in the run's spec"


def _model_difference(parent: ModelSpec, run: ModelSpec) -> str | None:
    if parent.name != run.name:
        return f"the model is {parent.name!r} but the run's model is {run.name!r} (model={parent.name})"
    if parent.name == "mlp" and parent.hidden != run.hidden:
        return f"the model's hidden size {parent.hidden} differs from the run's: {run.hidden} (model.hidden)"
    return None


def _text(value: object) -> str:
    return "[" + ", ".join(map(value_text, value)) + "]" if isinstance(value, tuple) else str(value)
