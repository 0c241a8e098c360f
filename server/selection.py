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


def _candidates(records: list[Record], metric: str) -> list[tuple[int, float, float]]:
    """(round, value, standard error) of the rounds that may be handed out: from the first one
    that aggregated an update on (earlier ones are the untrained model), with a validation
    value. The error is that of a noisy DP release (0 for exact metrics)."""
    found, trained = [], False
    for record in records:
        trained = trained or record.changed_model
        value = record.validation_value(metric)
        if trained and value is not None:
            error = record.validation.pooled.get(f"{metric}_se")
            found.append((record.round, float(value), float(error or 0.0)))
    return found


# Two rounds whose pooled validation values differ by less than this many standard errors of
# the difference are a tie (a one-sided 95 % z): under DP the noise, not the model, would decide.
TIE_Z = 1.645


def select(records: list[Record], metric: str) -> Selection:
    """The round with the best pooled validation ``metric``; a tie keeps the earlier round.

    Under DP (validation values with standard errors) a later round no worse than the best
    within :data:`TIE_Z` standard errors of the difference is preferred to it: it trained more,
    and the releases cannot tell them apart. Noise too large to tell any round apart hands out
    the last round and never stops early; releases precise enough to tell act as exact ones.
    """
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    last = records[-1].round if records else 0
    candidates = _candidates(records, metric)
    best: tuple[int, float, float] | None = None
    for candidate in candidates:
        if best is None or sign * candidate[1] < sign * best[1]:
            best = candidate
    if best is None:
        return Selection(None, None, len(records))
    tied = [
        c
        for c in candidates
        if c[0] > best[0] and sign * (c[1] - best[1]) <= TIE_Z * (c[2] ** 2 + best[2] ** 2) ** 0.5
    ]
    chosen = max(tied, key=lambda c: c[0]) if tied and (best[2] > 0 or tied[-1][2] > 0) else best
    return Selection(chosen[0], chosen[1], last - chosen[0])


def chosen_round(records: list[Record], metric: str) -> int | None:
    """The round a run hands out: the selected one, else (no validation at all) the last."""
    selected = select(records, metric).round
    return selected if selected is not None else (records[-1].round if records else None)


def _last_clear_improvement(records: list[Record], metric: str) -> int | None:
    """The latest round better than the previous such round by more than :data:`TIE_Z`
    standard errors of their difference (the first candidate is one; exact values: any
    strictly better value), or None without a candidate. The reference moves only on a clear
    improvement (Keras's ``min_delta``), here with the releases' own noise as the margin."""
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0
    reference: tuple[int, float, float] | None = None
    for candidate in _candidates(records, metric):
        margin = TIE_Z * (candidate[2] ** 2 + reference[2] ** 2) ** 0.5 if reference else 0.0
        if reference is None or sign * (reference[1] - candidate[1]) > margin:
            reference = candidate
    return None if reference is None else reference[0]


def rounds_without_improvement(records: list[Record], metric: str, improvement: str = "tie") -> int | None:
    """Rounds completed since the last improvement (None: no round released a validation metric).

    ``tie``: since the round :func:`select` hands out, the latest within the noise of the best,
    so noise too large to tell rounds apart never stops a run. ``clear``: since the last round
    clearly better than the one before it (:func:`_last_clear_improvement`), so such noise
    stops it after ``patience`` rounds: the releases show no gain worth the next round's ε.
    With exact values (no DP) both count from the first round with the best value.
    """
    if improvement == "clear":
        found = _last_clear_improvement(records, metric)
        return None if found is None else records[-1].round - found
    selection = select(records, metric)
    return None if selection.round is None else selection.rounds_since


def should_stop(records: list[Record], metric: str, rules: EarlyStoppingSettings) -> bool:
    """Patience ran out: ``patience`` rounds without an improvement (``rules.improvement``;
    never without a validation metric)."""
    if rules.patience <= 0 or len(records) < max(rules.min_rounds, 1):
        return False
    since = rounds_without_improvement(records, metric, rules.improvement)
    return since is not None and since >= rules.patience
