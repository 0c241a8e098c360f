"""ε a site paid for an update that never reached the global model, said rather than silent.

A site reserves a round's ε in its ledger before it trains (client.budget), so every fault
between that moment and the aggregate leaves a charge with nothing to show for it: a reply lost
with a node or its network, a round re-done after the SuperLink or the coordinator stopped
(the resumed run trains it again), a rejected update, a discarded round. The charge is right to
keep (the steps were taken on patients' rows); what must not happen is that nobody says so.

Each training reply carries the site's own list of the rounds it was charged for in this run
(``charged_rounds``, one per training); subtracting the rounds whose aggregate took the site's
update leaves the unaggregated charges. A site that went silent and never replied again cannot
send its list: its silent rounds are named as unconfirmed, for its privacy officer's ledger.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from federation.core.records import RoundRecord


def charged_not_aggregated(
    records: list[RoundRecord], reported: dict[str, list[int]] | None = None
) -> dict[str, list[int]]:
    """Site -> the rounds it was charged for whose update no aggregate of this run took, with
    repeats (a round paid twice and used once is there once). The charged rounds: the longest
    list the site sent (a run's ledger rows only grow), from its training replies and
    ``reported`` (its answers to a resumed run's query, server.ledger_word)."""
    charged = {site: list(rounds) for site, rounds in (reported or {}).items()}
    used: dict[str, Counter] = {}
    for record in records:
        for site, metrics in record.train.items():
            rounds = [int(r) for r in metrics.get("charged_rounds") or []]
            if len(rounds) > len(charged.get(site, [])):
                charged[site] = rounds
        if record.changed_model:
            for site in record.aggregated:
                used.setdefault(site, Counter())[record.round] += 1
    left = {site: Counter(rounds) - used.get(site, Counter()) for site, rounds in charged.items()}
    return {site: sorted(rest.elements()) for site, rest in sorted(left.items()) if rest}


# Within a round a site is asked to train, then to release its validation (and, once, test) rows.
STAGE_ORDER = {"train": 0, "evaluate": 1, "test": 2}


def _last_word(records: list[RoundRecord]) -> dict[str, tuple[int, int]]:
    """Site -> (round, stage) of its last answer: that reply carried its ledger's ε, every
    charge before it included."""
    last: dict[str, tuple[int, int]] = {}
    for record in records:
        for stage, part in ((0, record.train), (1, record.validation.sites), (2, record.evaluate.sites)):
            for site in part:
                last[site] = max(last.get(site, (0, 0)), (record.round, stage))
    return last


def silent_rounds(records: list[RoundRecord]) -> dict[str, list[int]]:
    """Site -> the rounds it did not answer (no reply within the round's timeout, to training
    or a release) after its last answer: whether it was charged for them only its ledger knows.
    A silence it answered after is covered: that later reply carried the ledger's ε."""
    last = _last_word(records)
    silent: dict[str, list[int]] = {}
    for record in records:
        for failure in record.failures:
            site, stage = failure.get("site"), STAGE_ORDER.get(str(failure.get("stage", "train")), 0)
            if not site or failure.get("code") is not None or (record.round, stage) <= last.get(site, (0, 0)):
                continue
            if record.round not in silent.get(site, []):
                silent.setdefault(site, []).append(record.round)
    return dict(sorted(silent.items()))


def unaggregated_summary(records: list[RoundRecord], word: dict[str, dict] | None = None) -> dict[str, Any]:
    """summary.json's ``privacy.charged_not_aggregated`` and ``privacy.unconfirmed``; ``word``: a
    resumed run's ledger answers (server.ledger_word): each site's charged rounds, or, for a
    site of the stopped attempt that did not answer, ``unanswered_after`` (the checkpoint's
    round): its round in flight is unconfirmed unless it answered later in this run."""
    word = word or {}
    reported = {site: w["charged_rounds"] for site, w in word.items() if w.get("charged_rounds")}
    unconfirmed = silent_rounds(records)
    last = _last_word(records)
    for site, entry in word.items():
        after = entry.get("unanswered_after")
        if after is not None and last.get(site, (0, 0))[0] <= after:
            unconfirmed[site] = sorted({*unconfirmed.get(site, []), after + 1})
    return {
        "charged_not_aggregated": charged_not_aggregated(records, reported),
        "unconfirmed": dict(sorted(unconfirmed.items())),
    }


def _rounds(rounds: list[int]) -> str:
    return ("round " if len(rounds) == 1 else "rounds ") + ", ".join(map(str, rounds))


def _named(head: str, rounds_by_site: dict[str, list[int]], tail: str) -> list[str]:
    if not rounds_by_site:
        return []
    return [
        head + "; ".join(f"site {site} {_rounds(rounds)}" for site, rounds in rounds_by_site.items()) + tail
    ]


def unaggregated_lines(summary: dict[str, Any]) -> list[str]:
    """The console's lines after the run (none when every charge was used)."""
    privacy = summary.get("privacy") or {}
    return _named(
        "ε charged for updates no aggregate used: ",
        privacy.get("charged_not_aggregated") or {},
        " (a lost reply, a re-done round, a rejected or discarded update); "
        "it stays spent and is in each site's ε of this run",
    ) + _named(
        "ε charged unknown, no reply since: ",
        privacy.get("unconfirmed") or {},
        "; if it trained, its ledger holds that ε though no aggregate used it "
        "(lhsfed site ledger at the site shows it)",
    )
