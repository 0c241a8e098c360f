"""A wrapper that screens client updates before any Flower strategy aggregates them.

It wraps (never subclasses) the strategy, as Flower's DP wrappers do: ``configure_train``
remembers the global arrays the round starts from; ``aggregate_train`` drops replies that
fail ``strategies.validation`` and hands the rest, in a fixed site order, to the wrapped
strategy. A round with fewer usable replies than ``min_train_nodes`` keeps the global model
(``discarded`` says why, for the round record).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from federation.core import wire
from strategies import validation
from strategies.state import load_strategy_state, strategy_state
from strategies.validation import Rejection

log = logging.getLogger(__name__)


def _site(reply: Message) -> str:
    try:
        return str(reply.content[wire.SITE][wire.SITE_NAME])
    except KeyError:
        return f"node-{reply.metadata.src_node_id}"


def _arrays(reply: Message) -> validation.Arrays | None:
    records = reply.content.array_records
    if len(records) != 1:
        return None
    return {k: a.numpy() for k, a in next(iter(records.values())).items()}


class ValidatedStrategy(Strategy):
    """Drop broken or outsized updates, then delegate to ``inner``.

    Parameters
    ----------
    inner : Strategy
        Any Flower strategy (FedAvg, FedAdam, Krum, ...).
    norm_factor : float (default: 10.0)
        An update is rejected if its norm exceeds this many times the low median norm.
    max_update_norm : float or None (default: None)
        A fixed norm bound; replaces the median rule when set.
    min_train_nodes : int (default: 2)
        Fewer usable updates than this and the round keeps the global model.
    seed : int or None (default: None)
        Seeds node sampling per round (seed * 1000 + round) so a resumed run samples alike.
    """

    def __init__(
        self,
        inner: Strategy,
        *,
        norm_factor: float = 10.0,
        max_update_norm: float | None = None,
        min_train_nodes: int = 2,
        seed: int | None = None,
    ) -> None:
        self.inner = inner
        self.norm_factor = norm_factor
        self.max_update_norm = max_update_norm
        self.min_train_nodes = min_train_nodes
        self.seed = seed
        self.rejected: list[Rejection] = []  # of the last aggregated round
        self.aggregated_sites: list[str] = []
        self.discarded: str | None = None  # why the last round kept the global model
        self._reference: validation.Arrays = {}

    def summary(self) -> None:
        log.info(
            "update validation: norm factor %s, fixed bound %s, min train nodes %s",
            self.norm_factor,
            self.max_update_norm,
            self.min_train_nodes,
        )
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._reference = {k: a.numpy() for k, a in arrays.items()}
        if self.seed is not None:
            random.seed(self.seed * 1000 + server_round)  # Flower samples with `random`
        return self.inner.configure_train(server_round, arrays, config, grid)

    def screen(self, replies: Iterable[Message]) -> tuple[list[Message], list[Rejection]]:
        """(usable replies sorted by site, rejections) among the replies without an error."""
        ok = [r for r in replies if not r.has_error()]
        weight_key = getattr(self.inner, "weighted_by_key", wire.NUM_EXAMPLES)
        arrays = [_arrays(r) for r in ok]
        reasons = validation.screen(
            [a or {} for a in arrays], self._reference, factor=self.norm_factor, max_norm=self.max_update_norm
        )
        kept, rejected = [], []
        for reply, got, reason in zip(ok, arrays, reasons, strict=True):
            if got is None:
                reason = "reply does not carry exactly one array record"
            elif reason is None and not _positive_weight(reply, weight_key):
                reason = f"metric {weight_key!r} is missing or not positive"
            if reason is None:
                kept.append(reply)
            else:
                rejected.append(Rejection(_site(reply), int(reply.metadata.src_node_id), reason))
        return sorted(kept, key=_site), sorted(rejected, key=lambda r: r.site)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        kept, self.rejected = self.screen(list(replies))
        for r in self.rejected:
            log.warning(
                "round %s: rejected the update of site %s (node %s): %s",
                server_round,
                r.site,
                r.node,
                r.reason,
            )
        self.aggregated_sites, self.discarded = [_site(r) for r in kept], None
        if len(kept) < self.min_train_nodes:
            self.discarded = (
                f"only {len(kept)} usable updates (minimum {self.min_train_nodes}); the global model is kept"
            )
            log.warning("round %s: %s", server_round, self.discarded)
            self.aggregated_sites = []
            return None, None
        arrays, metrics = self.inner.aggregate_train(server_round, kept)
        if arrays is None:
            self.discarded = f"{type(self.inner).__name__} aggregated nothing; the global model is kept"
            self.aggregated_sites = []
            return None, metrics
        return self._in_global_dtypes(arrays), metrics

    def _in_global_dtypes(self, arrays: ArrayRecord) -> ArrayRecord:
        """Flower's FedOpt promotes float32 arrays to float64; the global model keeps its dtypes."""
        return ArrayRecord(
            {k: Array(np.asarray(a.numpy(), dtype=self._reference[k].dtype)) for k, a in arrays.items()}
        )

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def state_dict(self) -> dict:
        """The wrapped strategy's state to checkpoint (e.g. FedAdam's moments)."""
        return strategy_state(self.inner)

    def load_state_dict(self, state: dict) -> None:
        load_strategy_state(self.inner, state)


def _positive_weight(reply: Message, key: str) -> bool:
    records = reply.content.metric_records
    value = next(iter(records.values())).get(key) if len(records) == 1 else None
    return isinstance(value, (int, float)) and value > 0
