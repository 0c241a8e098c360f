"""``lhsfed-train resume=RUN_DIR``: continue a stopped run with the config it started with.

The run folder holds Hydra's composed config (``.hydra/config.yaml``) and the server's
checkpoint; only ``rounds=`` may change on resume (to extend a run), since any other change
would make the checkpoint and the config disagree. A run that already finished (its
``summary.json`` covers the rounds asked for, or it stopped early) is said so, and nothing runs.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from federation.core.errors import ConfigError, collect_then_raise
from federation.core.run_layout import CHECKPOINT, HYDRA_CONFIG, SUMMARY, read_json

# What may differ on resume: more rounds, and the simulation runtime (the same apps either way).
CHANGEABLE = ("rounds", "federation.runtime")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resumed_config(run_dir: str, current: DictConfig, overrides: list[str]) -> tuple[DictConfig, Path]:
    """(the run's saved config, its folder), or a ConfigError listing every problem."""
    folder = Path(run_dir).expanduser().resolve()
    saved = folder / HYDRA_CONFIG
    changed = [o for o in overrides if _override_key(o) not in ("resume", *CHANGEABLE)]
    problems = [
        message
        for bad, message in (
            (
                not saved.is_file(),
                f"{saved} does not exist: resume= takes a run folder that lhsfed-train wrote",
            ),
            (
                not (folder / CHECKPOINT).is_file(),
                f"{folder / CHECKPOINT} does not exist: the run finished no round, start it again instead",
            ),
            (
                bool(changed),
                f"resume= continues the saved config; only {', '.join(CHANGEABLE)}= "
                f"may change with it (remove {changed})",
            ),
        )
        if bad
    ]
    collect_then_raise(problems, ConfigError)
    from server.checkpoint import load_resume_state  # torch: only when resuming

    load_resume_state(folder)  # a checkpoint that does not load is refused here, before the runtime
    cfg = OmegaConf.load(saved)
    for key in CHANGEABLE:
        if any(_override_key(o) == key for o in overrides):
            OmegaConf.update(cfg, key, OmegaConf.select(current, key), force_add=True)
    return cfg, folder


def finished_run(folder: Path, cfg: DictConfig) -> str | None:
    """The line saying ``folder`` already finished the rounds ``cfg`` asks for, or None."""
    summary = read_json(Path(folder) / SUMMARY)
    if not isinstance(summary, dict) or not isinstance(summary.get("rounds"), int):
        return None
    done, wanted = summary["rounds"], int(cfg.rounds)
    selection = summary.get("selection") or {}
    stopped = bool(selection.get("stopped_early")) and wanted <= int(selection.get("rounds_planned", done))
    if done < wanted and not stopped:
        return None
    how = "stopped early by early_stopping" if stopped and done < wanted else f"ran all its {done} rounds"
    return (
        f"lhsfed-train: {folder} is a finished run ({how}; {SUMMARY} is written); nothing to do, "
        f"nothing was run; to train more rounds: lhsfed-train resume={folder} rounds=N (N > {done})"
    )
