"""A resumed run asks every site what its ledger charged the run so far, before round one of
the rest (message type ``query.charges``, client.app.charges).

The stopped attempt (SuperLink or coordinator killed mid-round) may have sent a round that
sites trained and paid for, and whose replies nobody received: the checkpoint cannot know.
Only the sites' ledgers do, so the resumed run asks them, says at once which sites paid for a
round past the checkpoint, and counts that ε in the run's (summary.json, the last line).
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.core import wire
from server.exchange import exchange
from server.round_records import site_of

QUERY = f"{MessageType.QUERY}.{wire.QUERY_CHARGES}"


def ask_charges(grid: Grid, nodes: list[int], timeout: float, sites: dict[int, str]) -> dict[str, dict]:
    """Site -> ``{"charged_rounds", "epsilon", "site_epsilon"}`` from each node that answers."""
    messages = [
        Message(RecordDict({wire.CONFIG: ConfigRecord({})}), dst_node_id=n, message_type=QUERY) for n in nodes
    ]
    answered = exchange(grid, messages, timeout=timeout, stage="charges", sites=sites)
    word = {}
    for reply in (r for r in answered.replies if not r.has_error()):
        metrics = reply.content[wire.METRICS]
        word[site_of(reply)] = {
            "charged_rounds": [int(r) for r in metrics.get(wire.CHARGED_ROUNDS, [])],
            "epsilon": metrics.get(wire.EPSILON),
            "site_epsilon": metrics.get(wire.SITE_EPSILON),
        }
    return word


def in_flight_lines(word: dict[str, dict], resumed_after: int) -> list[str]:
    """The resumed run's first lines: each site that paid for a round past the checkpoint."""
    return [
        f"resumed after round {resumed_after}: ε charged at site {site} for round(s) "
        f"{', '.join(map(str, rounds))} of the stopped attempt (its ε of this run is now "
        f"{entry['epsilon']:.3f}); an update it kept is sent again at no charge, and the run's "
        "last lines name any charge no aggregate used"
        for site, entry in sorted(word.items())
        if (rounds := [r for r in entry["charged_rounds"] if r > resumed_after])
        and entry.get("epsilon") is not None
    ]
