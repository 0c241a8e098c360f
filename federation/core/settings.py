"""The one typed config boundary: flat Flower run config <-> typed settings.

Hydra composes a nested config for the coordinator; ``flatten_config`` turns it into Flower's
flat run config (scalars only, the dataset spec as one JSON string); both apps call
``RunSettings.from_run_config`` and pass typed objects inward from there.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from federation.core.dataspec import DatasetSpec, spec_from_json
from federation.core.errors import ConfigError, collect_then_raise
from federation.core.glm_grid import parse_grid
from federation.core.learning_rate import resolved_lr
from federation.core.model_spec import MODEL_NAMES, ModelSpec

STRATEGY_NAMES = (
    "fedavg",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "fedmedian",
    "trimmed_mean",
    "krum",
)
# Strategies that only need the weighted mean of the updates (what SecAgg+ reveals).
SECURE_AGGREGATION_STRATEGIES = ("fedavg", "fedprox")
# Groups the apps need; the launcher-only group (federation) is not sent.
APP_GROUPS = ("model", "train", "privacy", "strategy", "selection", "early_stopping")
SELECTION_METRICS = ("loss", "auroc")
IMPROVEMENTS = ("tie", "clear")  # early_stopping.improvement: what counts as better under DP
# What a ServerApp run does (server.tasks): train, or one site query of the learning loop.
TASKS = ("train", "compare", "drift")
# After the federation each site may adapt the selected model to itself (client.personalize).
PERSONALIZE_MODES = ("none", "recalibrate", "finetune")
SCALARS = (bool, int, float, str)


# model=glm (configs/model/glm.yaml): the exact federated logistic regression (Newton on the
# sites' summed statistics, federation.core.glm), DP off only; its result is a logreg model.
GLM = "glm"
RUN_MODEL_NAMES = (*MODEL_NAMES, GLM)
GLM_ONLY_WITHOUT_DP = "model=glm is exact (DP off) only: set privacy=off, or use model=logreg for DP"


@dataclass(frozen=True)
class ModelSettings:
    name: str = "mlp"
    hidden: int = 32
    dropout: float = 0.0
    # model=glm only: the L2 strengths λ fitted together (objective Σ log-loss + λ/2 ‖w‖², i.e.
    # sklearn's C = 1/λ; one string, "0.1,1,10", as a Hydra list travels) and the Newton
    # step (max-abs) below which the fit has converged.
    l2_grid: str = "0.01,0.1,1,10,100"
    tolerance: float = 1e-8


@dataclass(frozen=True)
class TrainSettings:
    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 0.01
    optimizer: str = "adam"
    # > 0: each round is exactly this many local steps (FLamby's protocol), not local_epochs.
    local_steps: int = 0
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0  # L2 pull of the optimiser (data-independent: costs no ε)


@dataclass(frozen=True)
class PrivacySettings:
    enabled: bool = True
    target_epsilon: float = 3.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "rdp"
    secure_aggregation: bool = False


@dataclass(frozen=True)
class SelectionSettings:
    """Which pooled validation metric picks the round a run hands out (loss: lowest)."""

    metric: str = "loss"


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """Stop after ``patience`` rounds without a better pooled validation metric (0: never).

    ``improvement`` says what a better value is under DP (exact values: both the same):
    ``tie``, any round within the releases' noise of the best (noise that cannot tell rounds
    apart never stops the run); ``clear``, only a round better than the last such one by more
    than the noise (such noise stops it after ``patience`` rounds; server.selection)."""

    patience: int = 3
    min_rounds: int = 1  # never stop before this many rounds
    improvement: str = "tie"


@dataclass(frozen=True)
class StrategySettings:
    name: str = "fedavg"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSettings:
    """Typed view of a run config: what both the ServerApp and ClientApp act on."""

    data: DatasetSpec
    seed: int = 42
    rounds: int = 10
    output_dir: str = ""
    resume: bool = False  # continue the run in output_dir from its checkpoint
    # Sites the launcher started (simulation); the server waits for all of them before the
    # feature statistics, so the initial model never depends on which nodes registered first.
    expected_nodes: int = 0
    # A warm start's first global model (``lhsfed-train init=``): federation.core.weights_text
    # text of the parent's state dict, preprocessing buffers included; empty: a fresh model.
    initial_weights: str = field(default="", repr=False)
    # What the ServerApp does (server.tasks): "train" a federation, or ask the sites one
    # question ("compare" two models, "drift" of their data); ``task_args`` is that task's JSON.
    task: str = "train"
    task_args: str = field(default="", repr=False)
    # none | recalibrate (Platt on each site's validation rows, no ε) | finetune (personalize_steps
    # local DP-SGD steps on its training rows, planned into the run's noise and charged to its ledger).
    personalize: str = "none"
    personalize_steps: int = 10
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    strategy: StrategySettings = field(default_factory=StrategySettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    early_stopping: EarlyStoppingSettings = field(default_factory=EarlyStoppingSettings)

    @classmethod
    def from_run_config(cls, flat: dict[str, Any]) -> "RunSettings":
        """Parse and validate, reporting every bad value at once."""
        groups = _group(flat)
        try:
            settings = cls(
                data=spec_from_json(str(flat["data.spec"])),
                seed=number(flat.get("seed", 42), "seed"),
                rounds=number(flat.get("rounds", 10), "rounds"),
                output_dir=str(flat.get("run.output_dir", "")),
                resume=_to_bool(flat.get("run.resume", False)),
                expected_nodes=number(flat.get("run.expected_nodes", 0), "run.expected_nodes"),
                initial_weights=str(flat.get("run.init_weights", "")),
                task=str(flat.get("run.task", "train")),
                task_args=str(flat.get("run.task_args", "")),
                personalize=str(flat.get("run.personalize", "none")),
                personalize_steps=number(flat.get("run.personalize_steps", 10), "run.personalize_steps"),
                model=_typed(ModelSettings, groups["model"], "model"),
                train=_typed(TrainSettings, groups["train"], "train"),
                privacy=_typed(PrivacySettings, groups["privacy"], "privacy"),
                selection=_typed(SelectionSettings, groups["selection"], "selection"),
                early_stopping=_typed(EarlyStoppingSettings, groups["early_stopping"], "early_stopping"),
                strategy=StrategySettings(
                    name=str(groups["strategy"].pop("name", "fedavg")), params=groups["strategy"]
                ),
            )
        except KeyError as err:
            raise ConfigError(f"run config lacks {err}; launch through lhsfed-train") from None
        collect_then_raise(_problems(settings), ConfigError)
        return settings


def _typed(cls, values: dict[str, Any], group: str):
    """Build a settings dataclass, converting each value to its field's type (3 -> 3.0);
    every value that is not of its type is reported at once, by its key."""
    types = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {cls.__name__}; known: {sorted(types)}")
    converters = {
        "bool": lambda v, _key: _to_bool(v),
        "int": lambda v, key: number(v, key),
        "float": lambda v, key: number(v, key, float),
        "str": lambda v, _key: str(v),
    }
    converted, problems = {}, []
    for key, value in values.items():
        try:
            converted[key] = converters.get(types[key], lambda v, _key: v)(value, f"{group}.{key}")
        except ConfigError as err:
            problems.append(str(err))
    collect_then_raise(problems, ConfigError)
    return cls(**converted)


def number(value: Any, key: str, kind: type = int) -> int | float:
    """``value`` as an int (or float), or one ConfigError naming the key (``rounds=abc``)."""
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        converted = kind(value)
        if not math.isfinite(converted):
            raise ValueError(value)
        return converted
    except (TypeError, ValueError, OverflowError):
        what = "a whole number" if kind is int else "a finite number"
        raise ConfigError(
            f"{key}={value!r} is not {what}; give one, e.g. {key}={'10' if kind is int else '0.5'}"
        ) from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _group(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {g: {} for g in APP_GROUPS}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if head in groups and rest:
            groups[head][rest] = value
    return groups


# The widest hidden layer a run may ask for: a site allocates hidden x 2·features floats per
# model it builds, so the coordinator's number must be bounded before anything is built.
MAX_HIDDEN = 4096


def _problems(s: RunSettings) -> list[str]:
    checks = [
        (
            (1 if s.model.name == "mlp" else 0) <= s.model.hidden <= MAX_HIDDEN,
            f"model.hidden must be in 1..{MAX_HIDDEN} for mlp (0 ignored by logreg; got "
            f"{s.model.hidden}), e.g. model.hidden=32",
        ),
        (
            s.strategy.name in STRATEGY_NAMES,
            f"strategy {s.strategy.name!r} is unknown; choose one of {', '.join(STRATEGY_NAMES)}",
        ),
        (
            s.model.name in RUN_MODEL_NAMES,
            f"model {s.model.name!r} is unknown; choose one of {', '.join(RUN_MODEL_NAMES)}",
        ),
        (s.task in TASKS, f"run.task {s.task!r} is unknown; choose one of {', '.join(TASKS)}"),
        (
            s.personalize in PERSONALIZE_MODES,
            f"personalize={s.personalize!r} is unknown; choose one of {', '.join(PERSONALIZE_MODES)}",
        ),
        (
            s.personalize_steps >= 1,
            f"personalize_steps must be >= 1 (got {s.personalize_steps}), e.g. personalize_steps=10",
        ),
        (s.rounds >= 1, f"rounds must be >= 1 (got {s.rounds})"),
        (s.train.local_epochs >= 1, f"train.local_epochs must be >= 1 (got {s.train.local_epochs})"),
        (s.train.local_steps >= 0, f"train.local_steps must be >= 0 (got {s.train.local_steps})"),
        (0 <= s.train.momentum < 1, f"train.momentum must be in [0, 1) (got {s.train.momentum})"),
        (s.train.weight_decay >= 0, f"train.weight_decay must be >= 0 (got {s.train.weight_decay})"),
        (s.train.batch_size >= 1, f"train.batch_size must be >= 1 (got {s.train.batch_size})"),
        (s.train.lr > 0, f"train.lr must be > 0 (got {s.train.lr})"),
        (
            s.train.optimizer in ("adam", "sgd"),
            f"train.optimizer must be adam or sgd (got {s.train.optimizer!r})",
        ),
        (
            s.selection.metric in SELECTION_METRICS,
            f"selection.metric must be one of {', '.join(SELECTION_METRICS)} (got {s.selection.metric!r})",
        ),
        (
            s.early_stopping.patience >= 0,
            f"early_stopping.patience must be >= 0, 0 turns it off (got {s.early_stopping.patience})",
        ),
        (
            s.early_stopping.improvement in IMPROVEMENTS,
            f"early_stopping.improvement must be one of {', '.join(IMPROVEMENTS)} "
            f"(got {s.early_stopping.improvement!r})",
        ),
        (
            s.early_stopping.min_rounds >= 0,
            f"early_stopping.min_rounds must be >= 0 (got {s.early_stopping.min_rounds})",
        ),
        (
            s.privacy.target_epsilon > 0,
            f"privacy.target_epsilon must be > 0 (got {s.privacy.target_epsilon})",
        ),
        (0 < s.privacy.delta < 1, f"privacy.delta must be in (0, 1) (got {s.privacy.delta})"),
        (s.privacy.max_grad_norm > 0, f"privacy.max_grad_norm must be > 0 (got {s.privacy.max_grad_norm})"),
        (
            s.privacy.accountant in ("rdp", "prv"),
            f"privacy.accountant must be rdp or prv (got {s.privacy.accountant!r})",
        ),
        (
            not s.privacy.secure_aggregation or s.strategy.name in SECURE_AGGREGATION_STRATEGIES,
            f"privacy.secure_aggregation=true hides each site's update, so strategy "
            f"{s.strategy.name!r} cannot see them; use one of {', '.join(SECURE_AGGREGATION_STRATEGIES)}",
        ),
    ]
    return [message for ok, message in checks if not ok] + (_glm_problems(s) if s.model.name == GLM else [])


def _glm_problems(s: RunSettings) -> list[str]:
    """model=glm: exact sums, so DP off only; one fit of a few rounds (no SecAgg+, resume or
    personalize); a valid λ grid and tolerance."""
    checks = [
        (not s.privacy.enabled, GLM_ONLY_WITHOUT_DP),
        (
            not s.privacy.secure_aggregation,
            "model=glm sends each site's sums, not a weighted mean: set privacy.secure_aggregation=false",
        ),
        (not s.resume, "model=glm does not resume (its rounds take seconds): start a new run"),
        (s.personalize == "none", "model=glm runs with personalize=none only"),
        (s.model.tolerance > 0, f"model.tolerance must be > 0 (got {s.model.tolerance}), e.g. 1e-8"),
    ]
    problems = [message for ok, message in checks if not ok]
    try:
        parse_grid(s.model.l2_grid)
    except ValueError as err:
        problems.append(str(err))
    return problems


def flatten_config(cfg: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """Coordinator's nested config -> Flower's flat run config (scalars only)."""
    flat: dict[str, bool | int | float | str] = {
        "seed": number(cfg["seed"], "seed"),
        "rounds": number(cfg["rounds"], "rounds"),
        "run.output_dir": str(cfg.get("output_dir") or ""),
        # Filled by the launcher from init= (federation.coordinator.warm_start), as output_dir is.
        "run.init_weights": str(cfg.get("init_weights") or ""),
        "data.spec": json.dumps(cfg["data"], sort_keys=True),
        "run.personalize": str(cfg.get("personalize") or "none"),
        "run.personalize_steps": number(cfg.get("personalize_steps", 10), "personalize_steps"),
    }
    for group in APP_GROUPS:
        for key, value in (cfg.get(group) or {}).items():
            if value is None:
                continue
            if isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            ):
                value = ",".join(repr(v) for v in value)  # a list of numbers (model.l2_grid): one string
            if not isinstance(value, SCALARS):
                raise ConfigError(f"{group}.{key} must be a number, string or bool (got {value!r})")
            flat[f"{group}.{key}"] = value
    if "train.lr" in flat:  # train.lr=auto: the coordinator resolves the rule; sites get a number
        dp = _to_bool(flat.get("privacy.enabled", PrivacySettings.enabled))
        flat["train.lr"] = resolved_lr(flat["train.lr"], dp, flat.get("privacy.target_epsilon", 3.0))  # type: ignore[assignment]
    return flat


def model_spec(settings: RunSettings) -> ModelSpec:
    """The model both apps build for a run: the server to start it, each site to load weights."""
    return ModelSpec(
        name="logreg" if settings.model.name == GLM else settings.model.name,  # a glm fit is a logreg
        n_features=len(settings.data.encoded_feature_names()),
        hidden=settings.model.hidden,
        dropout=settings.model.dropout,
    )
