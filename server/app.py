"""The coordinator's Flower ServerApp: parse the run config, run its loop (server.tasks)."""

from __future__ import annotations

# isort: off
import federation.core.eager_imports  # noqa: F401 - first, before Flower's threads race (its docstring)
# isort: on

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.core.run_layout import flwr_run_dir
from federation.core.settings import RunSettings
from server.prompt_grid import PromptGrid
from server.run_folder import refuse_outside_runs_root
from server.tasks import run_task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(dict(context.run_config))
    default_dir = flwr_run_dir(context.run_id)
    # Before anything is written: the run config is not trusted to pick the folder.
    refuse_outside_runs_root(Path(settings.output_dir) if settings.output_dir else default_dir)
    run_task(PromptGrid(grid), settings, default_dir=default_dir)  # type: ignore[arg-type]
