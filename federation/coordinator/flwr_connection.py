"""Talk to a SuperLink's Control API through Flower's own ``flwr`` CLI.

Flower 1.41 reads SuperLink connections from ``$FLWR_HOME/config.toml``. We never touch the
user's own Flower home: each use gets a private home (a temporary folder, or one inside the
run folder) holding a single connection, so what ``lhsfed`` does is exactly what
``flwr ... CONNECTION`` would do by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import tomli_w

from federation.core.errors import ConfigError

CONNECTION = "lhsfed"
FLWR = str(Path(sys.executable).parent / "flwr")
# The hospital-facing proxy's answer to anything but the Fleet API (docker/proxy.conf.template).
PROXY_REFUSAL = "403 Forbidden"
CONTROL_HINT = (
    "that port is the hospital-facing proxy, which passes only the Fleet API; run this "
    "on the SuperLink host against its loopback port (e.g. 127.0.0.1:9093)"
)


def write_flower_home(home: Path, address: str, ca_cert: Path | None) -> Path:
    """A Flower home whose default connection is ``address`` (TLS with ``ca_cert``, or plain)."""
    connection: dict = {"address": address}
    if ca_cert is None:
        connection["insecure"] = True
    else:
        if not Path(ca_cert).is_file():
            raise ConfigError(f"{ca_cert}: CA certificate not found (lhsfed pki init writes ca.pem)")
        connection["root-certificates"] = str(Path(ca_cert).resolve())
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    config = {"superlink": {"default": CONNECTION, CONNECTION: connection}}
    (home / "config.toml").write_text(tomli_w.dumps(config))
    return home


def flwr_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }


def run_flwr(
    home: Path, *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``flwr ARGS`` against the home's connection; output captured as text."""
    return subprocess.run(
        [FLWR, *args], env=flwr_env(home), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def temporary_home(address: str, ca_cert: Path | None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lhsfed-flwr-") as tmp:
        yield write_flower_home(Path(tmp), address, ca_cert)


def json_reply(proc: subprocess.CompletedProcess, what: str) -> dict:
    """The ``--format json`` answer of a ``flwr`` command, or one clear error line."""
    try:
        reply = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        reply = {}
    if proc.returncode != 0 or not reply.get("success", False):
        detail = reply.get("error-message") or (proc.stderr or proc.stdout).strip()[-400:]
        if PROXY_REFUSAL in detail:
            detail = CONTROL_HINT
        raise ConfigError(f"{what} failed: {detail}")
    return reply


def register_node(address: str, ca_cert: Path, public_key: Path, site: str) -> int:
    """Register a site's public key with the SuperLink (``flwr supernode register``)."""
    with temporary_home(address, ca_cert) as home:
        proc = run_flwr(
            home,
            "supernode",
            "register",
            str(Path(public_key).resolve()),
            CONNECTION,
            "--name",
            site,
            "--format",
            "json",
        )
    return int(json_reply(proc, f"registering {site} at {address}")["node-id"])
