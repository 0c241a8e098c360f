"""Best-round selection and early stopping, from the round records alone (pure).

Only the pooled metrics of the sites' validation rows (``record.validation``) are read;
the test split (``record.evaluate``) never takes part in a choice. Everything is
recomputed from the records, so a resumed run (records from its checkpoint) chooses and
stops exactly as the uninterrupted run does.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.core.records import RoundRecord
from federation.core.settings import EarlyStoppingSettings

Record = RoundRecord
HIGHER_IS_BETTER = {"loss": False, "auroc": True}


@dataclass(frozen=True)
class Selection:
    """The best round so far (None: no round released a validation metric)."""

    round: int | None
    value: float | None
    rounds_since: int  # rounds completed after the best one (or since the start)


def _candidates(records: list[Record], metric: str) -> list[tuple[int, float]]:
    """(round, value) of the rounds that may be handed out: from the first one that
    aggregated an update on (earlier ones are the untrained model), with a validation value."""
    found, trained = [], False
    for record in records:
        trained = trained or record.changed_model
        value = record.validation_value(metric)
        if trained and value is not None:
            found.append((record.round, float(value)))
    return found


def select(records: list[Record], metric: str) -> Selection:
    """The round with the best pooled validation ``metric``; a tie keeps the earlier round."""
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    last = records[-1].round if records else 0
    best: tuple[int, float] | None = None
    for server_round, value in _candidates(records, metric):
        if best is None or sign * value < sign * best[1]:
            best = (server_round, value)
    if best is None:
        return Selection(None, None, len(records))
    return Selection(best[0], best[1], last - best[0])


def chosen_round(records: list[Record], metric: str) -> int | None:
    """The round a run hands out: the selected one, else (no validation at all) the last."""
    selected = select(records, metric).round
    return selected if selected is not None else (records[-1].round if records else None)


def should_stop(records: list[Record], metric: str, rules: EarlyStoppingSettings) -> bool:
    """Patience ran out: ``patience`` rounds since the best one (never without a best round)."""
    if rules.patience <= 0 or len(records) < max(rules.min_rounds, 1):
        return False
    selection = select(records, metric)
    return selection.round is not None and selection.rounds_since >= rules.patience
