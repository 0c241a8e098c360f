"""docker/healthcheck-supernode.sh: the SuperNode image's HEALTHCHECK (liveness, not connection).

A stand-in runtime API (GET /health -> 200, as flower-supernode's answers) and two sleeping
processes in place of the node and its runner, recorded where the entrypoint records them.
"""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.helpers.deployment_net import DOCKER, base_env

SCRIPT = DOCKER / "healthcheck-supernode.sh"


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def runtime_api():
    server = HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def processes():
    started = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def _check(tmp_path: Path, port: int) -> subprocess.CompletedProcess:
    env = {**base_env(tmp_path), "TMPDIR": str(tmp_path), "LHSFED_NODE_PORT": str(port)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def _record(tmp_path: Path, port: int, node: int, runner: int) -> None:
    (tmp_path / f"lhsfed-supernode-{port}.pids").write_text(f"{node} {runner}\n")


def test_healthy_when_both_processes_run_and_the_runtime_api_answers(tmp_path, runtime_api, processes):
    _record(tmp_path, runtime_api, processes[0].pid, processes[1].pid)
    proc = _check(tmp_path, runtime_api)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("(not a connection check)")


def test_unhealthy_when_the_runner_is_gone(tmp_path, runtime_api, processes):
    processes[1].kill()
    processes[1].wait()
    _record(tmp_path, runtime_api, processes[0].pid, processes[1].pid)
    proc = _check(tmp_path, runtime_api)
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"unhealthy: this site's runner (pid {processes[1].pid}) is not running"


def test_unhealthy_when_the_runtime_api_does_not_answer(tmp_path, processes):
    _record(tmp_path, 9, processes[0].pid, processes[1].pid)  # nothing listens on port 9
    proc = _check(tmp_path, 9)
    assert proc.returncode == 1
    assert "does not answer GET /health" in proc.stdout


def test_unhealthy_before_the_node_started(tmp_path):
    proc = _check(tmp_path, 9094)
    assert proc.returncode == 1 and "the node was not started" in proc.stdout
