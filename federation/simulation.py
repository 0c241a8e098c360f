"""Run the ServerApp and ClientApp in Flower's simulation runtime (Ray) on this machine.

The apps must read only ``context.run_config``, as on a real SuperLink. Flower 1.41's
in-process runtime takes a run config from an app folder's ``pyproject.toml``, so we write
one for the run, holding the flattened Hydra config; nothing else is special-cased.
"""

from __future__ import annotations

import os
from pathlib import Path

import tomli_w
from flwr.app import Context, RecordDict
from flwr.supercore.telemetry import EventType
from flwr.simulation.run_simulation import _run_simulation

APP_FOLDER = ".flwr-app"


def write_app_folder(run_dir: Path, run_config: dict) -> Path:
    """A minimal Flower app folder whose default run config is this run's config."""
    folder = Path(run_dir) / APP_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    project = {
        "project": {"name": "lhs-federation-run", "version": "0.1.0"},
        "tool": {"flwr": {"app": {
            "publisher": "lhs-federation",
            "components": {"serverapp": "server.app:app", "clientapp": "client.app:app"},
            "config": dict(run_config),
        }}},
    }
    (folder / "pyproject.toml").write_bytes(tomli_w.dumps(project).encode())
    return folder


def run_in_simulation(run_config: dict, *, run_dir: Path, num_nodes: int, client_cpus: float,
                      data_dir: Path | None) -> None:
    """Start the runtime once, run every round, stop it; errors in the apps propagate."""
    from client.app import app as client_app  # imported late: Ray workers import them too
    from server.app import app as server_app

    if data_dir is not None:
        os.environ["LHSFED_SITE_DATA_DIR"] = str(Path(data_dir).resolve())
    folder = write_app_folder(run_dir, run_config)
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(),
                      run_config=dict(run_config))
    _run_simulation(
        num_supernodes=num_nodes,
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app=client_app,
        server_app=server_app,
        backend_config={"client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0},
                        "init_args": {"num_cpus": os.cpu_count() or 2, "include_dashboard": False,
                                      # Actor logs stay out of the console (one line per round);
                                      # app errors still reach the server as error replies.
                                      "log_to_driver": False}},
        server_app_context=context,
        app_dir=str(folder),
        is_app=True,  # clients read their run config from the app folder too
    )
