"""Only the coordinator controls the federation.

Attacks by a party holding only the public ``ca.pem`` (every hospital has it), driven with
Flower's own ``flwr`` CLI and Control API client at the hospital-facing port (the proxy), must
fail; the same calls at the SuperLink's loopback port (what the coordinator uses, and what
the hospital port was before the proxy) succeed, so each attack is shown to be real.
A run config whose ``run.output_dir`` lies outside the runs root is refused, nothing written.

One SuperLink + proxy serves the module (no SuperNodes: none of this needs training).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from flwr.proto.control_pb2 import ListRunsRequest  # pylint: disable=E0611
from flwr.supercore.control import ControlHttpClient

from federation.cli.main import main
from federation.coordinator.deployment import run_status
from federation.coordinator.flwr_connection import (
    CONNECTION,
    run_flwr,
    write_flower_home,
)
from federation.core.errors import ConfigError
from federation.security import pki
from server.run_folder import refuse_outside_runs_root
from tests.helpers.deployment_net import (
    BIN,
    DOCKER,
    REPO,
    Network,
    base_env,
    descendants,
    free_port,
    start,
)

ATTACKS_NEED = "403 Forbidden"


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("control_plane")
    net = Network(root, runs_root=root / "runs")
    try:
        net.make_pki()
        net.start_superlink()
        yield net
    finally:
        net.stop()


def _hospital_home(net: Network) -> Path:
    """What a hospital can build: the public CA and the address it dials."""
    return write_flower_home(net.root / "hospital-home", net.address, net.ca_cert)


def _reply(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def _refused(proc: subprocess.CompletedProcess) -> bool:
    reply = _reply(proc)
    return reply["success"] is False and ATTACKS_NEED in reply["error-message"]


def _submit(home: Path, output_dir: Path) -> subprocess.CompletedProcess:
    """``flwr run .`` of this app with a chosen run folder; it waits for SuperNodes (none come)."""
    return run_flwr(
        home,
        "run",
        ".",
        CONNECTION,
        "--format",
        "json",
        "--run-config",
        f'run.output_dir="{output_dir}"',
        cwd=REPO,
        timeout=300,
    )


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(1)


def _run_ids(home: Path) -> set[int]:
    return {int(r["run-id"]) for r in _reply(run_flwr(home, "ls", CONNECTION, "--format", "json"))["runs"]}


@pytest.fixture(scope="module")
def waiting_run(network):
    """A run the coordinator submitted, waiting for SuperNodes: (run id, its run folder)."""
    folder = network.runs_root / "waiting"
    run_id = int(_reply(_submit(network.coordinator_home(), folder))["run-id"])
    _wait(folder.exists, 240, "the ServerApp never created its run folder")
    return run_id, folder


@pytest.mark.slow
def test_hospital_cannot_register_a_node_key(network, tmp_path, capsys):
    _, public = pki.create_node_key("intruder", tmp_path)
    attack = run_flwr(
        _hospital_home(network), "supernode", "register", str(public), CONNECTION, "--format", "json"
    )
    assert _refused(attack)
    assert (
        main(
            [
                "pki",
                "register",
                "intruder",
                str(public),
                "--superlink",
                network.address,
                "--ca-cert",
                str(network.ca_cert),
            ]
        )
        == 2
    )
    assert "passes only the Fleet API" in capsys.readouterr().err  # one line, the fix in it
    known = _reply(run_flwr(network.coordinator_home(), "supernode", "ls", CONNECTION, "--format", "json"))[
        "nodes"
    ]
    assert known == []  # nothing was registered
    # Control: the same call at the SuperLink's own port registers the key.
    _, other = pki.create_node_key("control", tmp_path)
    control = run_flwr(
        network.coordinator_home(), "supernode", "register", str(other), CONNECTION, "--format", "json"
    )
    assert _reply(control)["success"] is True


@pytest.mark.slow
def test_hospital_cannot_list_submit_or_stop_runs(network, waiting_run):
    run_id, _ = waiting_run
    hospital, coordinator = _hospital_home(network), network.coordinator_home()
    assert _refused(run_flwr(hospital, "ls", CONNECTION, "--format", "json"))
    before = _run_ids(coordinator)
    assert run_id in before  # control: the coordinator lists the run
    assert _refused(_submit(hospital, network.runs_root / "by-hospital"))
    assert _run_ids(coordinator) == before  # no run was created
    assert _refused(run_flwr(hospital, "stop", str(run_id), CONNECTION, "--format", "json"))
    assert not run_status(coordinator, run_id)[0].startswith("finished")
    # Control: the coordinator can stop it.
    assert (
        _reply(run_flwr(coordinator, "stop", str(run_id), CONNECTION, "--format", "json"))["success"] is True
    )
    _wait(lambda: run_status(coordinator, run_id)[0] == "finished:stopped", 60, "not stopped")


@pytest.mark.slow
def test_flower_control_client_is_refused_at_the_hospital_port(network):
    """Flower's own Control API client, not only the CLI; 403 comes from the proxy."""

    def client(address: str) -> ControlHttpClient:
        return ControlHttpClient.from_server_address(
            address, insecure=False, root_certificates=network.ca_cert.read_bytes(), interceptors=()
        )

    with pytest.raises(httpx.HTTPStatusError, match="403"):
        client(network.address).ListRuns(ListRunsRequest())
    assert client(network.control_address).ListRuns(ListRunsRequest()) is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [
        "/v1/control/list-runs",
        "/v1/runtime/get-nodes",
        "/docs",
        "/v1/fleet/../control/list-runs",
        "/v1/fleet/%2e%2e/control/list-runs",
        "/v1/fleet/..%2fcontrol/list-runs",
        "/v1/fleet//../control/list-runs",
    ],
)
def test_proxy_passes_only_plain_fleet_request_lines(network, path):
    """Raw request lines (http.client sends them unnormalised): tricks to reach Control fail."""
    context = ssl.create_default_context(cafile=str(network.ca_cert))
    conn = http.client.HTTPSConnection("127.0.0.1", network.port, context=context, timeout=30)
    conn.request("POST", path, body=b"", headers={"Content-Type": "application/protobuf"})
    response = conn.getresponse()
    assert response.status == 403
    assert b"only the Fleet API" in response.read()


@pytest.mark.slow
def test_run_folder_outside_the_runs_root_is_refused(network, waiting_run):
    elsewhere = network.root / "elsewhere" / "run"
    coordinator = network.coordinator_home()
    run_id = int(_reply(_submit(coordinator, elsewhere))["run-id"])
    _wait(lambda: run_status(coordinator, run_id)[0].startswith("finished"), 240, "never ended")
    status, details = run_status(coordinator, run_id)
    assert status == "finished:failed"
    assert f"run.output_dir={elsewhere}: outside the coordinator's runs root" in details
    assert not elsewhere.parent.exists()  # nothing written there
    assert waiting_run[1].is_dir()  # control: a folder inside the root is created


def test_runs_root_resolves_dots_and_symlinks(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert refuse_outside_runs_root(root / "a" / "b", str(root)) == (root / "a" / "b").resolve()
    for escape in (root / ".." / "x", root / "link" / "x", Path("/etc/cron.d")):
        with pytest.raises(ConfigError, match="LHSFED_RUNS_ROOT"):
            refuse_outside_runs_root(escape, str(root))


def test_superlink_entrypoint_refuses_a_public_bind(tmp_path):
    pki.create_ca(tmp_path)
    pki.create_server_cert(tmp_path, ["link.example.org"])
    env = {
        **base_env(tmp_path),
        "LHSFED_TLS_DIR": str(tmp_path),
        "LHSFED_BIND_HOST": "0.0.0.0",
        "LHSFED_STATE_DB": str(tmp_path / "state.db"),
    }
    proc = subprocess.run(
        ["bash", str(DOCKER / "entrypoint-superlink.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 64
    assert "LHSFED_BIND_HOST=0.0.0.0" in proc.stderr and "no authentication" in proc.stderr


def test_proxy_entrypoint_refuses_a_non_loopback_upstream(tmp_path):
    pki.create_ca(tmp_path)
    pki.create_server_cert(tmp_path, ["link.example.org"])
    env = {
        **base_env(tmp_path),
        "LHSFED_TLS_DIR": str(tmp_path),
        "LHSFED_UPSTREAM": "10.0.0.5:9093",
        "LHSFED_PROXY_DIR": str(tmp_path / "proxy"),
    }
    proc = subprocess.run(
        ["bash", str(DOCKER / "entrypoint-proxy.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 64
    assert proc.stderr.strip() == (
        "entrypoint-proxy: LHSFED_UPSTREAM=10.0.0.5:9093 must be a "
        "loopback HOST:PORT (the SuperLink binds to loopback)"
    )


def _superlink_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    pki.create_ca(tmp_path / "pki")
    pki.create_server_cert(tmp_path / "pki", ["127.0.0.1"])
    return {
        **base_env(tmp_path / "home"),
        "LHSFED_TLS_DIR": str(tmp_path / "pki"),
        "LHSFED_PORT": str(free_port()),
        "LHSFED_PROXY_HOST": "127.0.0.1",
        "LHSFED_PROXY_PORT": str(free_port()),
        "LHSFED_PROXY_DIR": str(tmp_path / "proxy"),
        "LHSFED_STATE_DB": str(tmp_path / "state.db"),
        "LHSFED_RUNS_ROOT": str(tmp_path / "runs"),
        **extra,
    }


def test_superlink_entrypoint_with_only_lhsfed_bin_starts_its_superexec(tmp_path):
    """On a host whose PATH lacks the project's tools, LHSFED_BIN alone is enough: Flower's
    SuperLink finds flower-superexec (it looks it up on PATH; without the fix it exits 3)."""
    env = _superlink_env(tmp_path, PATH="/usr/bin:/bin", LHSFED_BIN=str(BIN))
    proc = start(["bash", str(DOCKER / "entrypoint-superlink.sh")], env, tmp_path / "superlink.log")
    try:
        _wait(
            lambda: (
                not proc.alive()
                or any("flower-superexec" in _cmdline(pid) for pid in descendants(proc.popen.pid))
            ),
            120,
            "flower-superexec never started",
        )
        assert proc.alive(), proc.output()[-2000:]
    finally:
        proc.stop()


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("busy", ["LHSFED_PORT", "LHSFED_PROXY_PORT"])
def test_superlink_entrypoint_refuses_a_busy_port_in_one_line(tmp_path, busy):
    """A start failure is one line and a non-zero status at once, never a hang (the timeout
    is functional: a hang fails the test)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _superlink_env(tmp_path, LHSFED_BIN=str(BIN), **{busy: str(taken.getsockname()[1])})
        proc = subprocess.run(
            ["bash", str(DOCKER / "entrypoint-superlink.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 64
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"entrypoint-superlink: {busy}: ")
    assert "is in use" in proc.stderr


def test_superlink_entrypoint_without_flower_exits_in_one_line(tmp_path):
    (tmp_path / "empty-bin").mkdir()
    env = _superlink_env(tmp_path, LHSFED_BIN=str(tmp_path / "empty-bin"))
    proc = subprocess.run(
        ["bash", str(DOCKER / "entrypoint-superlink.sh")], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 64 and proc.stderr.count("\n") == 1
    assert "empty-bin/flower-superlink: not found (set LHSFED_BIN" in proc.stderr
