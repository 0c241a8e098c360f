"""The personalize mode a run had when this site first trained in it (kept at the site).

A later message of the same run (same run identity, e.g. a new Flower run reusing the run
folder) could otherwise flip ``personalize=none`` to ``recalibrate`` and have the site score
arrays after the federation that were never planned. The site writes the run's mode and
steps once, at its first training message (:func:`record_plan`, never overwritten), and
personalizes only under that same plan (:func:`plan_refusal`).
"""

from __future__ import annotations

import json
from pathlib import Path

from client.site_policy import SitePolicy
from client.site_state import run_key, state_dir
from federation.core import atomic
from federation.core.settings import RunSettings

PLANS = "personalize-plans"  # the sub-folder of the state folder: one JSON file per run
NO_PLAN = "site did not train in this run: nothing to personalize"
CHANGED = (
    "this site personalizes only as the run planned when it first trained in it "
    "(personalize mode and steps); this message's run config changed them"
)


def _path(policy: SitePolicy, run_identity: str) -> Path:
    return state_dir(policy) / PLANS / f"{run_key(run_identity)}.json"


def _plan(settings: RunSettings, run_identity: str) -> dict:
    return {
        "run_identity": run_identity,
        "personalize": settings.personalize,
        "personalize_steps": int(settings.personalize_steps),
    }


def record_plan(policy: SitePolicy, run_identity: str, settings: RunSettings) -> None:
    """Keep the run's personalize plan, if this is the site's first training in the run."""
    document = json.dumps(_plan(settings, run_identity), sort_keys=True) + "\n"
    atomic.create_bytes(_path(policy, run_identity), document.encode())


def plan_refusal(policy: SitePolicy, run_identity: str, settings: RunSettings) -> str | None:
    """Why this message may not personalize the run (None: its plan is the recorded one)."""
    path = _path(policy, run_identity)
    if not path.is_file():
        return NO_PLAN
    return None if json.loads(path.read_text()) == _plan(settings, run_identity) else CHANGED
