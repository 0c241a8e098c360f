"""TEST-ONLY fault injection: a Flower client mod that makes chosen sites misbehave.

Never part of a deployment: ``client.app`` registers the mod only when the environment
variable ``LHSFED_TEST_FAULTS`` is set, e.g.::

    LHSFED_TEST_FAULTS="va:nan@1,va:scale@2,hungary:raise@2" lhsfed-train ...

Each entry is ``SITE:KIND`` (every round) or ``SITE:KIND@ROUND``. Kinds, applied to the
site's reply to a train message:

- ``nan``: the first array is all NaN;
- ``scale``: the update (reply minus global) is multiplied by 1000;
- ``shape``: the first array loses its last row;
- ``signflip``: the update is negated (a classic poisoning attack);
- ``raise``: the ClientApp raises after training, as a crash mid-round would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType

from federation.core import wire
from federation.core.errors import ConfigError, collect_then_raise

FAULTS_ENV = "LHSFED_TEST_FAULTS"
KINDS = ("nan", "scale", "shape", "signflip", "raise")
SCALE = 1000.0


@dataclass(frozen=True)
class Fault:
    site: str
    kind: str
    round: int | None = None  # None: every round

    def applies(self, site: str, server_round: int) -> bool:
        return self.site == site and self.round in (None, server_round)


def parse_faults(text: str) -> list[Fault]:
    """``"va:nan@1,hungary:raise"`` -> faults; every malformed entry reported at once."""
    faults, problems = [], []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        site, _, rest = entry.partition(":")
        kind, _, when = rest.partition("@")
        if not site or kind not in KINDS or (when and not when.isdigit()):
            problems.append(f"{FAULTS_ENV} entry {entry!r} must be SITE:KIND[@ROUND] "
                            f"with KIND one of {', '.join(KINDS)}")
            continue
        faults.append(Fault(site, kind, int(when) if when else None))
    collect_then_raise(problems, ConfigError)
    return faults


def corrupt(kind: str, sent: dict[str, np.ndarray], trained: dict[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    """The arrays a faulty site returns instead of ``trained`` (pure)."""
    first = next(iter(trained))
    if kind == "nan":
        return {**trained, first: np.full_like(trained[first], np.nan)}
    if kind == "shape":
        return {**trained, first: trained[first][:-1].copy()}
    factor = SCALE if kind == "scale" else -1.0
    return {k: (sent[k] + factor * (v - sent[k])).astype(v.dtype) for k, v in trained.items()}


def fault_mod(faults: list[Fault]):
    """A client mod making the train replies of the faulty sites corrupt (or raise)."""

    def mod(message: Message, context: Context, call_next) -> Message:
        reply = call_next(message, context)
        if message.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        site = str(reply.content[wire.SITE][wire.SITE_NAME])
        config = message.content.get(wire.CONFIG, ConfigRecord())
        server_round = int(config.get(wire.SERVER_ROUND, 0))
        for fault in (f for f in faults if f.applies(site, server_round)):
            if fault.kind == "raise":
                raise RuntimeError(f"injected test fault: site {site} crashed in round {server_round}")
            sent = {k: a.numpy() for k, a in message.content[wire.ARRAYS].items()}
            trained = {k: a.numpy() for k, a in reply.content[wire.ARRAYS].items()}
            reply.content[wire.ARRAYS] = ArrayRecord(
                {k: Array(v) for k, v in corrupt(fault.kind, sent, trained).items()})
        return reply

    return mod


def mods_from_env() -> list:
    """The fault mod when ``LHSFED_TEST_FAULTS`` is set (tests only), else no mod at all."""
    text = os.environ.get(FAULTS_ENV)
    return [fault_mod(parse_faults(text))] if text else []
