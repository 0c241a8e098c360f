"""Build a Flower 1.41 strategy from ``strategy=NAME`` and its parameters.

Every strategy is Flower's own (never a copy); this module only maps config names onto
constructor arguments and rejects parameters a strategy does not take.
"""

from __future__ import annotations

from typing import Any

from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    Strategy,
)

from federation.core import wire
from federation.core.errors import ConfigError
from federation.core.settings import StrategySettings
from strategies.validated import ValidatedStrategy

SAMPLING = (
    "fraction_train",
    "fraction_evaluate",
    "min_train_nodes",
    "min_evaluate_nodes",
    "min_available_nodes",
)
_ADAPTIVE = ("eta", "eta_l", "tau")
_CLASSES: dict[str, tuple[type[Strategy], tuple[str, ...]]] = {
    "fedavg": (FedAvg, ()),
    "fedprox": (FedProx, ("proximal_mu",)),
    "fedadam": (FedAdam, _ADAPTIVE + ("beta_1", "beta_2")),
    "fedyogi": (FedYogi, _ADAPTIVE + ("beta_1", "beta_2")),
    "fedadagrad": (FedAdagrad, _ADAPTIVE),
    "fedmedian": (FedMedian, ()),
    "trimmed_mean": (FedTrimmedAvg, ("beta",)),
    "krum": (Krum, ("num_malicious_nodes",)),
}
# Keys of the strategy group consumed by our round loop and update validation, not by Flower.
VALIDATION_KEYS = ("norm_factor", "max_update_norm")
ROUND_KEYS = ("round_timeout",) + VALIDATION_KEYS


def strategy_kwargs(settings: StrategySettings) -> dict[str, Any]:
    """Constructor arguments for the named strategy, refusing unknown parameters."""
    if settings.name not in _CLASSES:
        raise ConfigError(f"strategy {settings.name!r} is unknown; choose one of {sorted(_CLASSES)}")
    _, specific = _CLASSES[settings.name]
    allowed = SAMPLING + specific
    params = {k: v for k, v in settings.params.items() if k not in ROUND_KEYS}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"strategy {settings.name!r} takes no parameter {unknown}; it takes {list(allowed)}"
        )
    return params


def per_site_only(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """No average of the sites' train metrics: the server records each site's own
    (server.round_records), and a weighted mean of ε or of a site's charged rounds (a list
    whose length differs by site) means nothing."""
    return MetricRecord()


def build_strategy(settings: StrategySettings) -> Strategy:
    """The Flower strategy for ``settings.name``, weighting by each site's example count."""
    cls, _ = _CLASSES.get(settings.name, (None, ()))
    kwargs = strategy_kwargs(settings)
    return cls(
        weighted_by_key=wire.NUM_EXAMPLES,
        arrayrecord_key=wire.ARRAYS,
        configrecord_key=wire.CONFIG,
        train_metrics_aggr_fn=per_site_only,
        **kwargs,
    )


def build_validated_strategy(settings: StrategySettings, *, seed: int | None = None) -> ValidatedStrategy:
    """``build_strategy`` behind update validation: what the round loop runs."""
    params = settings.params
    max_norm = params.get("max_update_norm")
    return ValidatedStrategy(
        build_strategy(settings),
        norm_factor=float(params.get("norm_factor", 10.0)),
        max_update_norm=None if max_norm is None else float(max_norm),
        min_train_nodes=int(params.get("min_train_nodes", 2)),
        seed=seed,
    )
