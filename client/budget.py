"""The site's DP accounting state for a run, kept in the node's persistent ``context.state``.

The ClientApp object is rebuilt every round; this record is what remembers the steps
already taken, so ε is composed over every round of the run.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, RecordDict

from federation.privacy import History, merge_history

STATE_KEY = "dp-history"


def load_history(state: RecordDict) -> History:
    record = state.get(STATE_KEY)
    if record is None:
        return []
    return list(zip(record["noise"], record["rate"], record["steps"]))


def save_history(state: RecordDict, history: History) -> None:
    merged = merge_history(history)
    if not merged:
        return
    state[STATE_KEY] = ConfigRecord({
        "noise": [float(s) for s, _, _ in merged],
        "rate": [float(q) for _, q, _ in merged],
        "steps": [int(n) for _, _, n in merged],
    })
