"""Run the ServerApp and ClientApp in Flower's simulation runtime (Ray) on this machine.

The apps must read only ``context.run_config``, as on a real SuperLink. Flower 1.41's
in-process runtime takes a run config from an app folder's ``pyproject.toml``, so we write
one for the run, holding the flattened Hydra config; nothing else is special-cased. The
ClientApp is the hospital's (``CLIENT_APP``) unless the caller names another "module:attr"
(``federation.coordinator.apps``; tests run a fault-injecting one from ``tests/helpers``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tomli_w
from flwr.app import Context, RecordDict
from flwr.simulation.run_simulation import _run_simulation
from flwr.supercore.telemetry import EventType

from client.site_policy import MODE, SIMULATION
from federation.coordinator.apps import CLIENT_APP, SERVER_APP, load_app
from federation.coordinator.exported_env import site_data_dir
from federation.coordinator.interrupt import exit_on_signals
from federation.coordinator.ray_cluster import joined

APP_FOLDER = ".flwr-app"


class SimulatedSites:
    """The ClientApp as every simulated site runs it: Flower's simulation sets each node config
    to ``partition-id`` / ``num-partitions`` only, so this marks it ``lhsfed-mode=simulation``
    (without it a node is a deployed hospital and needs its own policy)."""

    def __init__(self, client_app) -> None:
        self.client_app = client_app

    def __call__(self, message, context: Context):
        context.node_config = {**context.node_config, MODE: SIMULATION}
        return self.client_app(message=message, context=context)


def write_app_folder(run_dir: Path, run_config: dict, client_app: str = CLIENT_APP) -> Path:
    """A minimal Flower app folder whose default run config is this run's config."""
    folder = Path(run_dir) / APP_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    project = {
        "project": {"name": "lhs-federation-run", "version": "0.1.0"},
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "lhs-federation",
                    "components": {"serverapp": SERVER_APP, "clientapp": client_app},
                    "config": dict(run_config),
                }
            }
        },
    }
    (folder / "pyproject.toml").write_bytes(tomli_w.dumps(project).encode())
    return folder


def run_in_simulation(
    run_config: dict,
    *,
    run_dir: Path,
    num_nodes: int,
    client_cpus: float,
    data_dir: Path | None,
    client_app: str | None = None,
    ray_address: str | None = None,
) -> None:
    """Start the runtime once, run every round, stop it; errors in the apps propagate.

    ``client_app`` ("module:attr") names the ClientApp every simulated site runs (None: the
    hospital's). ``ray_address`` (HEAD:PORT): the sites run on that Ray cluster, which this
    process joins and leaves running (federation.coordinator.ray_cluster); None: a Ray of
    its own on this machine.
    """
    client_app = client_app or CLIENT_APP
    clients = SimulatedSites(load_app(client_app))  # imported late: Ray workers import them too
    server_app = load_app(SERVER_APP, "the ServerApp")

    # Ray's C++ handler would print a stack dump on SIGTERM before ours runs (one line only).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    folder = write_app_folder(run_dir, run_config, client_app)
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=dict(run_config))
    # The data folder is exported before joining a cluster: the job's environment takes it along.
    with site_data_dir(data_dir), exit_on_signals(run_dir), _keep_sigterm_handler(), joined(ray_address):
        _run(clients, server_app, context, folder, num_nodes, client_cpus)


@contextmanager
def _keep_sigterm_handler() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler by ``sys.exit``, which would unwind into
    Flower's joins on threads that never end; keep ours (Ray's private hook, tested by
    tests/integration/test_interrupt.py)."""
    import ray._private.utils as ray_utils

    original = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda _handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = original


def _run(client_app, server_app, context: Context, folder: Path, num_nodes: int, client_cpus: float) -> None:
    # Used only where Ray is not initialised yet (no federation.ray_address): Flower's
    # RayBackend skips its ray.init when this process has joined a cluster.
    _run_simulation(
        num_supernodes=num_nodes,
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app=client_app,
        server_app=server_app,
        backend_config={
            "client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": os.cpu_count() or 2,
                "include_dashboard": False,
                # Actor logs stay out of the console (one line per round);
                # app errors still reach the server as error replies.
                "log_to_driver": False,
            },
        },
        server_app_context=context,
        app_dir=str(folder),
        is_app=True,  # clients read their run config from the app folder too
    )
