"""The run folder Hydra makes before the task runs: refuse one that cannot be made, and take
back what a refused run (or a resume, which writes into the resumed folder) left there.

Hydra creates ``hydra.run.dir`` (default ``outputs/runs/DATE/TIME``), writes ``.hydra/`` and
opens ``launcher.log`` in it before calling the task, so a rejected config used to leave a
folder behind each time. :class:`FolderRecord` notes what existed before Hydra started
(from the launcher's ``on_run_start`` callback); :meth:`FolderRecord.take_back` removes
Hydra's own files and then every folder that was made for them, if nothing else is there.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from federation.core.errors import ConfigError
from federation.core.run_layout import HYDRA_DIR, LAUNCHER_LOG, RUNS_ROOT_ENV, SITE_POLICY, WARM_START

HYDRA_FILES = (HYDRA_DIR, LAUNCHER_LOG)
# What the launcher writes before a run starts: the Flower home of a deployment's connection
# (deployment.FLOWER_HOME), the app folder submitted (simulation.APP_FOLDER), the simulated
# sites' policies. A run that failed having written only these left nothing worth keeping.
LAUNCH_FILES = (".flwr-home", ".flwr-app", SITE_POLICY, WARM_START)


def nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def refuse_uncreatable(run_dir: Path) -> None:
    """One clear line if ``run_dir`` cannot be made (a read-only or non-folder parent)."""
    run_dir = Path(run_dir).absolute()
    base = nearest_existing(run_dir)
    if base == run_dir and run_dir.is_dir():
        problem = None if os.access(run_dir, os.W_OK | os.X_OK) else f"{run_dir} is not writable"
    elif not base.is_dir():
        problem = f"{base} is not a folder"
    else:
        problem = None if os.access(base, os.W_OK | os.X_OK) else f"{base} is not writable"
    if problem:
        raise ConfigError(
            f"hydra.run.dir={run_dir}: the run folder cannot be created ({problem}); "
            "choose another hydra.run.dir"
        )


def runs_root() -> Path:
    """Where runs and queries go by default: ``LHSFED_RUNS_ROOT`` if set, else ``outputs``."""

    return Path(os.environ.get(RUNS_ROOT_ENV) or "outputs")


def refuse_outside_runs_root(folder: Path, option: str) -> None:
    """With ``LHSFED_RUNS_ROOT`` set (the SuperLink host's runs root), a run folder outside it
    is refused here, in one line, before anything is made: the ServerApp would refuse it."""

    root = os.environ.get(RUNS_ROOT_ENV)
    if root and not Path(folder).resolve().is_relative_to(Path(root).resolve()):
        raise ConfigError(
            f"{option}={folder}: outside the coordinator's runs root {Path(root).resolve()} "
            f"({RUNS_ROOT_ENV}), where the ServerApp writes; choose a folder under it, or leave "
            f"{option} out (the default is under it)"
        )


@dataclass
class FolderRecord:
    """What the run folder looked like before Hydra touched it."""

    run_dir: Path
    created_from: Path | None  # the highest folder Hydra had to make (None: run_dir existed)
    entries_before: frozenset[str]

    @classmethod
    def before_hydra(cls, run_dir: Path) -> "FolderRecord":
        run_dir = Path(run_dir).absolute()
        if run_dir.is_dir():
            return cls(run_dir, None, frozenset(os.listdir(run_dir)))
        top = run_dir
        while not top.parent.exists() and top.parent != top.parent.parent:
            top = top.parent
        return cls(run_dir, top, frozenset())

    def take_back(self, names: tuple[str, ...] = HYDRA_FILES) -> bool:
        """Remove ``names`` (Hydra's files) if they are all this run left; True if the folder
        is gone or back as it was."""
        if not self.run_dir.is_dir():
            return True
        ours = set(os.listdir(self.run_dir)) - self.entries_before
        if not ours <= set(names):
            return False  # the run wrote more: it started, and its folder is the record
        _close_log_files(self.run_dir)
        for name in ours:
            path = self.run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        if self.created_from is not None:
            folder = self.run_dir
            while folder != self.created_from.parent and _is_empty(folder):
                folder.rmdir()
                folder = folder.parent
        return True


def _is_empty(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def _close_log_files(folder: Path) -> list[logging.FileHandler]:
    """Detach and close the root logger's file handlers writing into ``folder``."""
    closed = []
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder:
            root.removeHandler(handler)
            handler.close()
            closed.append(handler)
    return closed


def move_log_file(from_folder: Path, to_file: Path) -> None:
    """Log into ``to_file`` (appending) instead of ``from_folder``'s log: a resumed run's log
    belongs with the run it continues."""
    for old in _close_log_files(Path(from_folder).absolute()):
        new = logging.FileHandler(to_file, mode="a")
        new.setLevel(old.level)
        new.setFormatter(old.formatter)
        for log_filter in old.filters:
            new.addFilter(log_filter)
        logging.getLogger().addHandler(new)


@contextmanager
def query_folder(out: Path, option: str = "--out") -> Iterator[Path]:
    """The folder of a site query (``lhsfed compare``, ``lhsfed drift``): refused outside the
    runs root, made, and on any failure taken back as it was if the query wrote nothing but
    its launch files (so a failed query leaves no empty folder)."""
    refuse_outside_runs_root(out, option)
    record = FolderRecord.before_hydra(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        record.take_back(LAUNCH_FILES)
        raise
