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
from dataclasses import dataclass
from pathlib import Path

from federation.core.errors import ConfigError
from federation.core.run_layout import HYDRA_DIR, LAUNCHER_LOG

HYDRA_FILES = (HYDRA_DIR, LAUNCHER_LOG)


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

    def take_back(self) -> bool:
        """Remove Hydra's files if they are all this run left; True if the folder is gone or
        back as it was."""
        if not self.run_dir.is_dir():
            return True
        ours = set(os.listdir(self.run_dir)) - self.entries_before
        if not ours <= set(HYDRA_FILES):
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
