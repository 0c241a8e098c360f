"""The coordinator's Flower ServerApp: parse the run config, run the federation loop."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.settings import RunSettings
from server.federation_loop import run_federation

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(dict(context.run_config))
    run_federation(grid, settings, default_dir=Path("outputs") / "flwr" / str(context.run_id))
