"""The SuperNode entrypoint's start failures: fast, one line, non-zero, never a hang.

No federation is needed: the entrypoint refuses before it dials anything. The 10 s bound is a
functional timeout (a hang fails the test), not a performance assertion.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers.deployment_net import DOCKER, base_env, free_port

BOUND_S = 10


@pytest.fixture
def node_env(tmp_path) -> dict[str, str]:
    """A hospital's environment whose files exist (their content is never read before the
    refusals tested here) and whose data file fails the site check."""
    for name in ("ca.pem", "site.key"):
        (tmp_path / name).write_text("placeholder\n")
    (tmp_path / "heart.csv").write_text("not,the,schema\n1,2,3\n")
    env = {
        **base_env(tmp_path / "unused"),
        "LHSFED_SUPERLINK": "127.0.0.1:9",
        "LHSFED_CA_CERT": str(tmp_path / "ca.pem"),
        "LHSFED_NODE_KEY": str(tmp_path / "site.key"),
        "LHSFED_DATA_PATH": str(tmp_path / "heart.csv"),
        "LHSFED_SITE_NAME": "cleveland",
        "LHSFED_MAX_EPSILON": "3",
        "LHSFED_DELTA": "1e-5",
        "LHSFED_LEDGER_PATH": str(tmp_path / "ledger" / "ledger.sqlite"),
        "LHSFED_NODE_PORT": str(free_port()),
    }
    env.pop("FLWR_HOME")
    return env


def _start(env: dict[str, str], cwd: Path, timeout: float = BOUND_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DOCKER / "entrypoint-supernode.sh")],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _last_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc.stderr.strip().splitlines()[-1]


def test_missing_binary_exits_at_once_naming_it(node_env, tmp_path):
    (tmp_path / "empty-bin").mkdir()
    proc = _start({**node_env, "LHSFED_BIN": str(tmp_path / "empty-bin")}, tmp_path)
    assert proc.returncode == 64
    assert proc.stderr.strip().count("\n") == 0
    assert "empty-bin/lhsfed: not found (set LHSFED_BIN" in _last_line(proc)


def test_occupied_node_port_exits_at_once_naming_it(node_env, tmp_path):
    with socket.socket() as taken:  # another node's runtime API on this host
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _start({**node_env, "LHSFED_NODE_PORT": str(port)}, tmp_path)
    assert proc.returncode == 64
    assert proc.stderr.strip().count("\n") == 0
    assert _last_line(proc) == (
        f"entrypoint-supernode: LHSFED_NODE_PORT={port}: 127.0.0.1:{port} is in use (another "
        "node on this host?); give each node its own LHSFED_NODE_PORT"
    )


def test_free_port_passes_and_each_node_gets_its_own_flower_home(node_env, tmp_path):
    """Control for the two refusals above: the same environment with a free port and real
    binaries gets past them (to the site check, which this data file fails), and the node's
    Flower home is created beside its own ledger, not in the shared ~/.flwr."""
    proc = _start(node_env, tmp_path, timeout=120)  # the site check imports pandas: not bounded
    assert proc.returncode == 64
    assert "site check failed for" in _last_line(proc)
    assert (tmp_path / "ledger" / "flwr-home").is_dir()
