"""The plan a site recorded for a run at its first training message, and the check against it.

A run's identity (its folder) outlives one Flower run: a resumed run keeps it. The ε target
bounds the run only if every message of that identity carries the plan the noise was
calibrated for; a coordinator that re-sends the run with more rounds, a larger target or
other fine-tuning steps would otherwise get a fresh allowance each time. So the site keeps
the plan (state folder, :mod:`client.site_state`) and refuses a message whose plan differs,
except a resume (``run.resume=true``) that only continues: the same plan, or more rounds
(the site then recalibrates to what is left of the same target, :mod:`client.budget`).
"""

from __future__ import annotations

import json
from pathlib import Path

from client.site_policy import SitePolicy
from client.site_state import run_key, state_dir
from federation.core.atomic import write_json
from federation.core.settings import RunSettings


def run_plan(settings: RunSettings) -> dict:
    """What fixes a run's DP-SGD steps, its releases and its ε target (the accountant's inputs).

    The spec's subgroup features are a release of the plan (federation.core.privacy
    .planned_releases): recorded when there are any, so a later message cannot add or drop
    them, and a plan without them is recorded as it always was."""
    t, p = settings.train, settings.privacy
    subgroups = [f.name for f in settings.data.subgroup_features]
    return ({"subgroups": subgroups} if subgroups else {}) | {
        "rounds": settings.rounds,
        "privacy.enabled": p.enabled,
        "privacy.target_epsilon": p.target_epsilon,
        "privacy.max_grad_norm": p.max_grad_norm,
        "train.batch_size": t.batch_size,
        "train.local_epochs": t.local_epochs,
        "train.local_steps": t.local_steps,
        "personalize": settings.personalize,
        "personalize_steps": settings.personalize_steps,
    }


def plan_path(policy: SitePolicy, run: str) -> Path:
    return state_dir(policy) / "plans" / f"{run_key(run)}.json"


def recorded_plan(policy: SitePolicy, run: str) -> dict | None:
    """The run's recorded plan (None: no training message of it yet)."""
    path = plan_path(policy, run)
    return json.loads(path.read_text())["plan"] if path.is_file() else None


def record_plan(policy: SitePolicy, run: str, plan: dict) -> None:
    write_json(plan_path(policy, run), {"run": run, "plan": plan})


def plan_refusal(recorded: dict | None, settings: RunSettings) -> str | None:
    """Why this message's plan may not act on the run (None: it may)."""
    asked = run_plan(settings)
    if recorded is None or recorded == asked:
        return None
    others_equal = {k: v for k, v in asked.items() if k != "rounds"} == {
        k: v for k, v in recorded.items() if k != "rounds"
    }
    if settings.resume and others_equal and asked["rounds"] >= recorded["rounds"]:
        return None
    changed = ", ".join(
        f"{k}={asked.get(k)!r} (was {recorded.get(k)!r})" for k in asked if asked.get(k) != recorded.get(k)
    )
    return (
        f"this run's plan is fixed at its first training message and this message changes it: "
        f"{changed}; a resume (run.resume=true) may only add rounds, start a new run "
        f"(another output_dir) for another plan"
    )
