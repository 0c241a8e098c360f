"""The SuperNode entrypoint's start failures: fast, one line, non-zero, never a hang.

No federation is needed: the entrypoint refuses before it dials anything. The 10 s bound is a
functional timeout (a hang fails the test), not a performance assertion.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
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


def test_missing_data_file_exits_at_once_naming_it(node_env, tmp_path):
    proc = _start({**node_env, "LHSFED_DATA_PATH": str(tmp_path / "nowhere.csv")}, tmp_path)
    assert proc.returncode == 64 and proc.stderr.strip().count("\n") == 0
    assert _last_line(proc) == (
        f"entrypoint-supernode: LHSFED_DATA_PATH={tmp_path / 'nowhere.csv'}: file not found "
        "(mount this site's data file read-only)"
    )


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("LHSFED_LEDGER_PATH", "not-a-folder/ledger.sqlite", "LHSFED_LEDGER_PATH="),
        ("LHSFED_NODE_STATE", "not-a-folder/node.ledger-state.json", "LHSFED_NODE_STATE="),
        ("TMPDIR", "not-a-folder", "TMPDIR="),
        ("FLWR_HOME", "not-a-folder/flwr-home", "FLWR_HOME="),
    ],
)
def test_a_folder_the_node_writes_that_is_not_writable_exits_at_once_naming_it(
    node_env, tmp_path, var, value, named
):
    """Below a regular file nothing can be created, whoever runs the script (root included)."""
    (tmp_path / "not-a-folder").write_text("a file\n")
    proc = _start({**node_env, var: str(tmp_path / value)}, tmp_path)
    assert proc.returncode == 64 and proc.stderr.strip().count("\n") == 0
    line = _last_line(proc)
    assert line.startswith(f"entrypoint-supernode: {named}") and "is not writable by uid" in line
    assert not (tmp_path / "ledger" / "flwr-home").exists()  # refused before anything was set up


# ----- the container's user (uid 49999 in the images; here an unprivileged uid) -----

NOBODY = 65534


@pytest.fixture
def site_as_user(tmp_path_factory) -> Path:
    """A site folder an unprivileged user can reach (pytest's own tmp root is root's 0700),
    with stand-in binaries (the site check they run fails)."""
    root = Path(tempfile.mkdtemp(prefix="lhsfed-site-"))
    root.chmod(0o755)
    (root / "bin").mkdir()
    stand_ins = {"lhsfed": "exit 1", "flower-supernode": "exit 99", "python": 'exec python3 "$@"'}
    for tool, body in stand_ins.items():  # python: the port check; lhsfed: a failing site check
        (root / "bin" / tool).write_text(f"#!/bin/sh\n{body}\n")
        (root / "bin" / tool).chmod(0o755)
    for name in ("ca.pem", "heart.csv", "spec.yaml"):
        (root / name).write_text("placeholder\n")
        (root / name).chmod(0o644)
    (root / "keys").mkdir()
    (root / "keys" / "site.key").write_text("placeholder\n")
    (root / "keys" / "site.key").chmod(0o644)
    (root / "ledger").mkdir()
    if os.geteuid() == 0:
        os.chown(root / "ledger", NOBODY, NOBODY)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _start_as_user(env: dict[str, str], site: Path) -> subprocess.CompletedProcess:
    """The entrypoint as an unprivileged user (as root: dropped to NOBODY with setpriv)."""
    drop = (
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    )
    env = {
        **env,
        "LHSFED_BIN": str(site / "bin"),
        "LHSFED_CA_CERT": str(site / "ca.pem"),
        "LHSFED_NODE_KEY": str(site / "keys" / "site.key"),
        "LHSFED_DATA_PATH": str(site / "heart.csv"),
        "LHSFED_SPEC_PATH": str(site / "spec.yaml"),
        "LHSFED_LEDGER_PATH": str(site / "ledger" / "ledger.sqlite"),
        "TMPDIR": str(site / "ledger"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    return subprocess.run(
        [*drop, "bash", str(DOCKER / "entrypoint-supernode.sh")],
        env=env,
        cwd=site,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )


def test_node_state_beside_a_read_only_key_exits_at_once_with_the_fix(node_env, site_as_user):
    """The docs' old `docker run` form: the key's folder is a read-only mount and
    LHSFED_NODE_STATE is unset, so the node state would go beside the key; every round failed.
    Now the start is refused, naming the variable and the fix."""
    (site_as_user / "keys").chmod(0o555)  # what a read-only mount is to the container's user

    proc = _start_as_user(node_env, site_as_user)

    assert proc.returncode == 64 and proc.stderr.strip().count("\n") == 0
    line = _last_line(proc)
    assert line.startswith(
        "entrypoint-supernode: LHSFED_NODE_STATE is not set and the node state goes beside "
        f"LHSFED_NODE_KEY: {site_as_user / 'keys'} is not writable by uid "
    )
    assert "set LHSFED_NODE_STATE=/state/node.ledger-state.json on a writable volume" in line


def test_node_state_on_a_writable_volume_gets_past_the_check(node_env, site_as_user):
    """Control: the same read-only key folder with LHSFED_NODE_STATE on a writable folder
    passes every path check (and stops at the stand-in binaries' site check)."""
    (site_as_user / "keys").chmod(0o555)
    env = {**node_env, "LHSFED_NODE_STATE": str(site_as_user / "ledger" / "state" / "node.json")}

    proc = _start_as_user(env, site_as_user)

    assert proc.returncode == 64
    assert "site check failed" in _last_line(proc)
    assert (site_as_user / "ledger" / "state").is_dir()


def test_a_key_the_container_user_cannot_read_names_the_chown(node_env, site_as_user):
    """`lhsfed pki node-key` as root writes a root-owned 0600 key: the image's user cannot read it."""
    if os.geteuid() != 0:
        pytest.skip("needs a key owned by another user")
    (site_as_user / "keys" / "site.key").chmod(0o600)

    proc = _start_as_user(node_env, site_as_user)

    assert proc.returncode == 64 and proc.stderr.strip().count("\n") == 0
    line = _last_line(proc)
    assert f"LHSFED_NODE_KEY={site_as_user / 'keys' / 'site.key'}: not readable by uid {NOBODY}" in line
    assert f"sudo chown {NOBODY} " in line and f"--owner-uid {NOBODY}" in line


# ----- restart policy: a configuration error waits before it exits -----


def test_a_configuration_error_waits_before_exiting(node_env, tmp_path):
    """LHSFED_CONFIG_ERROR_DELAY: the line at once, the exit after the delay (a restart policy
    then retries every DELAY s, not 60 times in 12 s)."""
    env = {**node_env, "LHSFED_DATA_PATH": str(tmp_path / "nowhere.csv"), "LHSFED_CONFIG_ERROR_DELAY": "2"}
    started = time.monotonic()
    proc = _start(env, tmp_path)
    elapsed = time.monotonic() - started

    assert proc.returncode == 64 and proc.stderr.strip().count("\n") == 0
    assert "LHSFED_DATA_PATH=" in _last_line(proc)
    assert 2 <= elapsed < BOUND_S


def test_stop_during_the_wait_exits_at_once(node_env, tmp_path):
    """`docker stop` (SIGTERM) during the wait ends it: bash as PID 1 would ignore an untrapped TERM."""
    env = {**node_env, "LHSFED_DATA_PATH": str(tmp_path / "nowhere.csv"), "LHSFED_CONFIG_ERROR_DELAY": "60"}
    proc = subprocess.Popen(
        ["bash", str(DOCKER / "entrypoint-supernode.sh")],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()  # printed before the wait
    assert "LHSFED_DATA_PATH=" in line
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=5) == 64
