"""A real federation on 127.0.0.1 for the deployment tests: PKI, a TLS SuperLink with node
authentication behind its Fleet-only proxy, and SuperNodes started through the docker
entrypoint scripts exactly as the containers run them (environment variables + paths).
Hospitals dial ``address`` (the proxy); the coordinator uses ``control_address`` (the
SuperLink's own loopback port, which in production only the SuperLink host reaches).
Every process runs in its own session so that stopping it (or SIGKILL-ing it, like a
container kill) takes its children too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from federation.coordinator.flwr_connection import (
    CONNECTION,
    register_node,
    run_flwr,
    write_flower_home,
)
from federation.core.data import embedded_dir
from federation.security import pki

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
BIN = Path(sys.executable).parent
SITES = ("cleveland", "hungary", "switzerland")
SITE_CAP = "30"  # each node's ε cap: room for every run the shared deployment network serves


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


@dataclass
class Proc:
    """A started process group and where its output goes."""

    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the group, then SIGKILL what is left of it and of every descendant
        (Flower starts its SuperExec in a session of its own)."""
        pid = self.popen.pid
        family = descendants(pid)
        self.kill(signal.SIGTERM)
        for target in family:
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def start(args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Proc:
    handle = open(log, "ab")
    popen = subprocess.Popen(
        args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd or log.parent, start_new_session=True
    )
    handle.close()
    return Proc(popen, log)


def base_env(home: Path) -> dict[str, str]:
    """The container's environment: our tools on PATH, a private Flower home, no telemetry,
    and a configuration error exits at once (no restart-loop delay)."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "LHSFED_CONFIG_ERROR_DELAY": "0",
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONWARNINGS": "ignore",
    }


@dataclass
class Network:
    """One federation under ``root``: call ``stop()`` in a ``finally``. Runs may write only
    under ``runs_root`` (default: the folder holding ``root``)."""

    root: Path
    port: int = field(default_factory=free_port)  # the proxy: what hospitals dial
    control_port: int = field(default_factory=free_port)  # the SuperLink itself, loopback
    runs_root: Path | None = None
    procs: list[Proc] = field(default_factory=list)
    nodes: dict[str, Proc] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def control_address(self) -> str:
        return f"127.0.0.1:{self.control_port}"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / pki.CA_CERT

    def make_pki(self) -> None:
        pki.create_ca(self.pki_dir)
        pki.create_server_cert(self.pki_dir, ["127.0.0.1", "localhost"])

    def start_superlink(self, timeout: float = 90) -> Proc:
        env = {
            **base_env(self.root / "superlink-home"),
            "LHSFED_TLS_DIR": str(self.pki_dir),
            "LHSFED_BIND_HOST": "127.0.0.1",
            "LHSFED_PORT": str(self.control_port),
            "LHSFED_PROXY_HOST": "127.0.0.1",
            "LHSFED_PROXY_PORT": str(self.port),
            "LHSFED_PROXY_DIR": str(self.root / "proxy"),
            "LHSFED_RUNS_ROOT": str(self.runs_root or self.root.parent),
            "LHSFED_STATE_DB": str(self.root / "state" / "superlink.db"),
        }
        proc = start(["bash", str(DOCKER / "entrypoint-superlink.sh")], env, self.root / "superlink.log")
        self.procs.append(proc)
        wait_for_port(self.control_port, timeout)
        wait_for_port(self.port, timeout)
        return proc

    def node_key(self, site: str) -> Path:
        folder = self.root / "sites" / site
        if not (folder / f"{site}.key").exists():
            pki.create_node_key(site, folder)
        return folder / f"{site}.key"

    def register(self, site: str) -> int:
        self.node_key(site)
        return register_node(
            self.control_address, self.ca_cert, self.root / "sites" / site / f"{site}.pub", site
        )

    def node_env(self, site: str, **overrides: str) -> dict[str, str]:
        folder = self.root / "sites" / site
        spec_dir = embedded_dir_for_tests()
        env = {
            **base_env(folder / "flwr-home"),
            "LHSFED_SUPERLINK": self.address,
            "LHSFED_CA_CERT": str(self.ca_cert),
            "LHSFED_NODE_KEY": str(self.node_key(site)),
            "LHSFED_DATA_PATH": str(spec_dir.get(site, spec_dir["hungary"])),
            "LHSFED_SITE_NAME": site,
            "LHSFED_LEDGER_PATH": str(folder / "ledger" / "ledger.sqlite"),
            # the site's own privacy policy (mandatory): a cap over every run, its δ
            "LHSFED_MAX_EPSILON": SITE_CAP,
            "LHSFED_DELTA": "1e-5",
            "LHSFED_NODE_PORT": str(free_port()),
        }
        env.update(overrides)
        return env

    def start_node(self, site: str, env: dict[str, str] | None = None, tag: str = "") -> Proc:
        proc = start(
            ["bash", str(DOCKER / "entrypoint-supernode.sh")],
            env or self.node_env(site),
            self.root / "sites" / site / f"supernode{tag}.log",
        )
        self.procs.append(proc)
        self.nodes[site] = proc
        return proc

    def coordinator_home(self) -> Path:
        return write_flower_home(self.root / "coordinator-home", self.control_address, self.ca_cert)

    def online_nodes(self) -> list[dict]:
        proc = run_flwr(self.coordinator_home(), "supernode", "ls", CONNECTION, "--format", "json")
        try:
            reply = json.loads(proc.stdout[proc.stdout.index("{") :])
        except ValueError:
            return []
        return [n for n in reply.get("nodes", []) if str(n.get("status", "")).lower() == "online"]

    def wait_online(self, count: int, timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = self.online_nodes()
            if len(nodes) >= count:
                return nodes
            time.sleep(2)
        raise TimeoutError(f"fewer than {count} SuperNodes online after {timeout:.0f}s")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def embedded_dir_for_tests() -> dict[str, Path]:
    """Each UCI site's embedded file, by site name."""
    from federation.cli.site import load_dataset_spec

    spec = load_dataset_spec("uci_heart")
    return {site: embedded_dir(spec) / name for site, name in spec.sites.items()}
