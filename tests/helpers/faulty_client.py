"""A test-only ClientApp: the hospital's ClientApp with a fault mod making chosen sites misbehave.

It lives under ``tests/`` so no hospital image ships it; the hospital's ``client.app`` has no
fault hook at all. A simulation runs it only when asked by name, with the faults in the
environment variable ``LHSFED_TEST_FAULTS`` (read here, never by ``client.app``)::

    LHSFED_TEST_FAULTS="va:nan@1,va:scale@2,hungary:raise@2" \
        PYTHONPATH=. lhsfed-train +federation.client_app=tests.helpers.faulty_client:app ...

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
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType
from flwr.clientapp import ClientApp

from client.app import app as hospital_app
from client.site_errors import site_error_mod
from federation.core import wire
from federation.core.errors import ConfigError, collect_then_raise
from tests.helpers.runs import REPO, run_launcher

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
            problems.append(
                f"{FAULTS_ENV} entry {entry!r} must be SITE:KIND[@ROUND] with KIND one of {', '.join(KINDS)}"
            )
            continue
        faults.append(Fault(site, kind, int(when) if when else None))
    collect_then_raise(problems, ConfigError)
    return faults


def corrupt(kind: str, sent: dict[str, np.ndarray], trained: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
                {k: Array(v) for k, v in corrupt(fault.kind, sent, trained).items()}
            )
        return reply

    return mod


def faulty_app(faults: list[Fault]) -> ClientApp:
    """The hospital's ClientApp, unchanged, inside the fault mod (itself inside the error mod,
    so an injected crash answers as a real one would: a category, the text in the site's log)."""
    app = ClientApp(mods=[site_error_mod, fault_mod(faults)])

    def hospital(message: Message, context: Context) -> Message:
        return hospital_app(message, context)

    queries = (
        wire.QUERY_BUDGET,
        wire.QUERY_CHARGES,
        wire.QUERY_COMPARE,
        wire.QUERY_DRIFT,
        wire.QUERY_PERSONALIZE,
    )
    registers = (
        app.train(),
        app.train(wire.GLM_ACTION),
        app.evaluate(),
        app.query(),
        *(app.query(q) for q in queries),
    )
    for register in registers:
        register(hospital)
    return app


app = faulty_app(parse_faults(os.environ.get(FAULTS_ENV, "")))


APP_REFERENCE = f"{__name__}:app"


def run_with_faults(
    tmp: Path, faults: str, *overrides: str, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """``lhsfed-train`` whose simulated sites run this ClientApp with ``faults`` (the launcher's
    own ``federation.client_app`` choice; ``tests`` is put on the path of its Ray workers);
    ``env`` adds variables (e.g. the simulated sites' policy)."""
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return run_launcher(
        tmp,
        f"+federation.client_app={APP_REFERENCE}",
        *overrides,
        env={FAULTS_ENV: faults, "PYTHONPATH": path, **(env or {})},
        **kwargs,
    )
