"""A two-node Ray cluster on 127.0.0.1 for tests: a head and a worker, each started with
``ray start --block`` in a session of its own with its own resources (``--num-cpus``), its
own temp folder and free ports, stopped (each process group, then what is left of its
descendants) by ``stop()``. Never ``ray stop``: it ends every Ray on the machine.

Ray keeps a node on loopback only when it cannot be a cluster: ``ray start`` rewrites
127.0.0.1 (the node's address and the ``--address`` it joins) to the machine's address and
then listens on every interface, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, under which a
worker node refuses to start. So, to keep everything on 127.0.0.1:

- the head and every driver (``lhsfed-train``, the state query) run with
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (``LOOPBACK``): 127.0.0.1 stays as given, and the
  head's servers listen on 127.0.0.1 only;
- the worker runs ``ray start``'s own command with one change, ``WORKER_START``: the
  addresses it is given are kept as they are (Ray's ``resolve_ip_for_localhost``).

A real cluster needs neither: its nodes have real addresses (docs/scale.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.deployment_net import Proc, free_port, start, wait_for_port

BIN = Path(sys.executable).parent
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
WORKER_START = (
    "import sys; import ray._private.services as services; "
    "services.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)
# ClientAppActor.run tasks per (Ray job, node id), from the GCS's task events (ray.timeline)
# and actor table (a task id ends with its actor's id). Ray's state API (ray list actors,
# ray.util.state) needs the dashboard, which this project does not install (ray[default]).
PLACEMENT = """
import collections, json, sys
import ray
import ray._private.state as state
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
actors = {a["ActorID"]: a for a in state.actors().values() if a["ActorClassName"] == "ClientAppActor"}
ran = collections.Counter()
for event in ray.timeline():
    if event.get("cat") == "task::ClientAppActor.run":
        actor = actors[event["args"]["task_id"][16:]]
        ran[actor["JobID"] + " " + actor["Address"]["NodeID"]] += 1
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
ray.shutdown()
print(json.dumps({"ran": ran, "nodes": nodes}))
"""


def _node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LHSFED_", "RAY_"))}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore", **(extra or {})}


def _ports(*flags: str) -> list[str]:
    return [arg for flag in flags for arg in (flag, str(free_port()))]


class TwoNodeCluster:
    """``with TwoNodeCluster(logs, worker_env=...) as cluster:`` a head and a worker of one
    CPU each; ``cluster.address`` is the head's; ``worker_env`` adds variables to the
    worker's ``ray start`` (what a node's own environment may hold)."""

    def __init__(self, logs: Path, worker_env: dict[str, str] | None = None, timeout: float = 90) -> None:
        self.logs, self.worker_env, self.timeout = Path(logs), worker_env or {}, timeout
        self._fresh()

    def _fresh(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[Proc] = []
        # Short: Ray's Unix sockets live under it (the pytest folder's path is too long for them).
        self.temp = Path(tempfile.mkdtemp(prefix="lhsfed-ray-"))

    def __enter__(self) -> TwoNodeCluster:
        """Started, or started again once, on new ports, if a node did not come up (in one of
        the eleven starts while this test was written, a worker's raylet never registered)."""
        for attempt in (1, 2):
            try:
                self.start()
                return self
            except TimeoutError as err:
                self.stop()
                if attempt == 2:
                    raise
                print(f"Ray cluster start failed, trying once more: {str(err)[:300]}", file=sys.stderr)
                self._fresh()
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc) -> None:
        self.stop()

    def _common(self, name: str) -> list[str]:
        return [
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(100 * 2**20),
            "--temp-dir",
            str(self.temp / name),
            "--disable-usage-stats",
            *_ports(
                "--node-manager-port",
                "--object-manager-port",
                "--runtime-env-agent-port",
                "--dashboard-agent-grpc-port",
                "--dashboard-agent-listen-port",
                "--metrics-export-port",
            ),
        ]

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        head = [str(BIN / "ray"), "start", "--head", "--port", str(self.port), "--include-dashboard", "false"]
        head += _ports("--ray-client-server-port", "--dashboard-port")
        self.procs.append(start(head + self._common("head"), _node_env(LOOPBACK), self.logs / "head.log"))
        wait_for_port(self.port, self.timeout)
        worker = [sys.executable, "-c", WORKER_START, "start", "--address", self.address]
        self.procs.append(
            start(worker + self._common("worker"), _node_env(self.worker_env), self.logs / "worker.log")
        )
        self.wait_for_nodes(2)

    def wait_for_nodes(self, count: int) -> None:
        from ray._raylet import GcsClient

        began, alive = time.monotonic(), 0
        while time.monotonic() < began + self.timeout:
            if not all(proc.alive() for proc in self.procs):
                break
            try:
                nodes = GcsClient(address=self.address).get_all_node_info(timeout=5)
                alive = sum(1 for node in nodes.values() if node.state == 0)  # ALIVE
            except Exception:  # noqa: BLE001 - the head may still be starting
                alive = 0
            if alive >= count:
                return
            time.sleep(0.5)
        tails = [f"{p.log.name}: {p.output()[-1500:]}" for p in self.procs]
        for log in sorted(self.temp.glob("*/session_latest/logs/raylet.*")):  # gone after stop()
            tails.append(f"{log.relative_to(self.temp)}: {log.read_text(errors='replace')[-1500:]}")
        waited = time.monotonic() - began
        raise TimeoutError(f"{alive} of {count} Ray nodes alive after {waited:.0f}s\n" + "\n".join(tails))

    def placement(self) -> dict:
        """{"ran": {"JOB NODE": ClientAppActor.run tasks}, "nodes": [alive node ids]}."""
        proc = subprocess.run(
            [sys.executable, "-c", PLACEMENT, self.address],
            capture_output=True,
            text=True,
            timeout=120,
            env=_node_env(LOOPBACK),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        shutil.rmtree(self.temp, ignore_errors=True)
