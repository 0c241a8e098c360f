"""Submit a run to a real SuperLink over TLS (never plaintext) and stream its progress.

The app bundle sent is the same minimal app folder the simulation uses: a pyproject.toml
whose default run config is this run's flattened Hydra config. The ServerApp and ClientApp
code itself comes from the lhs-federation installed in the SuperLink and SuperNode images,
so a hospital runs only the code its image was built with. The ServerApp writes the run
folder (``run.output_dir``) on the SuperLink's machine: the coordinator's own folder when the
SuperLink runs beside ``lhsfed-train``, else the same path there (mount it, or copy it back).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

from federation.coordinator.flwr_connection import (
    CONNECTION,
    FLWR,
    flwr_env,
    run_flwr,
    write_flower_home,
)
from federation.coordinator.interrupt import exit_on_signals, kill_descendants
from federation.core.errors import ConfigError, LhsFedError
from federation.core.records import read_rounds
from federation.core.run_layout import CHECKPOINT

# Flower's simulation package (imported below for the app folder) imports alembic, whose
# plugins log an INFO line each at import: noise in the coordinator's launcher.log.
logging.getLogger("alembic").setLevel(logging.WARNING)
from federation.coordinator.simulation import write_app_folder  # noqa: E402  (after the line above)

log = logging.getLogger(__name__)
FLOWER_HOME = ".flwr-home"
STARTED = re.compile(r"Successfully started run (\d+)")
# The ServerApp's console lines worth echoing: each round's line and its events, the test
# split's one release, an early stop (server/progress.py), and any error.
PROGRESS = re.compile(
    r"round\s+\d+(/\d+|\s+[a-z]+:)|test of round \d+|stopped early:|ε charged|error|exception", re.IGNORECASE
)
# The flwr CLI's own error panel (box-drawing lines): launcher.log keeps it; the console gets
# the one line this module raises with the cause instead.
PANEL = re.compile(r"^\s*[╭│╰]")
# What the flwr CLI says when the SuperLink does not answer (stream or ``flwr ls``).
UNAVAILABLE = "Connection to the SuperLink is unavailable"


UNKNOWN_SITE = re.compile(r"node (\d+) \(site unknown\)")


def name_registered_sites(line: str, names: dict[int, str]) -> str:
    """A node that failed before it named itself in this run (its reply carries the site name)
    is ``node N (site unknown)`` to the ServerApp; the SuperLink still knows the name it was
    registered under, so the coordinator's console says which hospital it is."""

    def named(match: re.Match) -> str:
        site = names.get(int(match.group(1)))
        return f"site {site} (node {match.group(1)}, by its registration)" if site else match.group(0)

    return UNKNOWN_SITE.sub(named, line)


def registered_names(superlink: str, ca_cert: Path) -> dict[int, str]:
    """Node id -> the site name it was registered under ({} if the SuperLink cannot list them:
    the names only make the console clearer, the run does not depend on them)."""
    from federation.coordinator.superlink_nodes import UNNAMED, list_nodes

    try:
        return {row.node_id: row.site for row in list_nodes(superlink, ca_cert) if row.site != UNNAMED}
    except (LhsFedError, OSError) as err:
        log.info("could not list the registered nodes' names: %s", err)
        return {}


class DeploymentError(LhsFedError):
    """The SuperLink refused the run, or the run did not complete."""


def stop_run(home: Path, started: dict[str, int]) -> None:
    """On Ctrl-C: end the ``flwr`` CLI, then ask the SuperLink to stop the run, so its
    ServerApp writes no more rounds into the folder a resume will continue (bounded: 5 s)."""
    kill_descendants()
    if "run_id" in started:
        try:
            run_flwr(home, "stop", str(started["run_id"]), CONNECTION, timeout=5)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("could not stop run %s on the SuperLink: %s", started["run_id"], err)


def _submit(
    folder: Path, home: Path, timeout: float, started: dict[str, int], names: dict[int, str] | None = None
) -> tuple[int, list[str]]:
    """``flwr run APP CONNECTION --stream``; echoes progress lines (every line goes to the
    launcher's log, launcher.log in the run folder), returns the run id (also put in
    ``started``, for :func:`stop_run`)."""
    proc = subprocess.Popen(
        [FLWR, "run", str(folder), CONNECTION, "--stream"],
        env=flwr_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_id, lines, deadline = None, [], time.monotonic() + timeout
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            log.info("flwr: %s", line.rstrip())  # the whole stream, into launcher.log
            if run_id is None and (match := STARTED.search(line)):
                run_id = started["run_id"] = int(match.group(1))
                print(f"submitted run {run_id}", flush=True)
            elif PROGRESS.search(line) and not PANEL.match(line):
                print(name_registered_sites(line.rstrip(), names or {}), flush=True)
            if time.monotonic() > deadline:
                raise DeploymentError(f"run {run_id} did not finish within {timeout:.0f}s")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if run_id is None:
        raise DeploymentError("the SuperLink did not start the run: " + " | ".join(lines[-5:]))
    return run_id, lines


def run_status(home: Path, run_id: int) -> tuple[str, str]:
    """(status, details) of a run as the SuperLink reports it."""
    proc = run_flwr(home, "ls", CONNECTION, "--run-id", str(run_id), "--format", "json")
    try:
        run = json.loads(proc.stdout[proc.stdout.index("{") :])["runs"][0]
    except (ValueError, KeyError, IndexError):
        return "unknown", (proc.stderr or proc.stdout).strip()[-300:]
    return str(run.get("status")), str(run.get("status-details", ""))


def require_tls(ca_cert: Path | str | None) -> Path:
    """The CA file the SuperLink's certificate must chain to; there is no plaintext fallback.

    Sites do not trust the coordinator, and the coordinator's run config and results cross
    the network: without TLS anyone on the path could read or change them.
    """
    if ca_cert is None or not str(ca_cert).strip():
        raise ConfigError(
            "federation.ca_cert is null: a deployment is submitted over TLS only; "
            "set federation.ca_cert=pki/ca.pem (the federation CA, lhsfed pki init)"
        )
    if not Path(ca_cert).is_file():
        raise ConfigError(
            f"federation.ca_cert={ca_cert}: file not found; give the federation "
            "CA certificate (lhsfed pki init writes pki/ca.pem)"
        )
    return Path(ca_cert)


def superlink_lost(superlink: str, run_id: int, run_dir: Path) -> str:
    """One line for a SuperLink that stopped answering mid-run (killed, restarted, its host
    down): what the run folder keeps and the command that continues it once it is back."""
    done = len(read_rounds(run_dir)) if (run_dir / CHECKPOINT).is_file() else 0
    then = (
        f"{done} round(s) are checkpointed in {run_dir}; once it answers again, continue with "
        f"lhsfed-train resume={run_dir}"
        if done
        else f"no round was checkpointed in {run_dir}; once it answers again, start the run again"
    )
    return (
        f"the SuperLink at {superlink} stopped answering during run {run_id}; {then} "
        "(the sites keep what their ledgers charged; the resumed run's last lines name any charge "
        "no aggregate used)"
    )


def run_in_deployment(
    run_config: dict, *, run_dir: Path, superlink: str, ca_cert: Path | None, timeout: float
) -> int:
    """Submit, stream, and fail with the SuperLink's reason unless the run completed."""
    ca_cert = require_tls(ca_cert)  # before anything is written or dialled
    if not superlink or ":" not in superlink:
        raise ConfigError(f"superlink={superlink!r}: give the SuperLink as HOST:PORT")
    home = write_flower_home(Path(run_dir) / FLOWER_HOME, superlink, ca_cert)
    folder = write_app_folder(run_dir, run_config)
    started: dict[str, int] = {}
    names = registered_names(superlink, ca_cert)
    with exit_on_signals(run_dir, stop=lambda: stop_run(home, started)):
        run_id, _ = _submit(folder, home, timeout, started, names)
    status, details = run_status(home, run_id)
    log.info("run %s on %s ended %s %s", run_id, superlink, status, details)
    if status == "unknown" and UNAVAILABLE in details:
        raise DeploymentError(superlink_lost(superlink, run_id, Path(run_dir)))
    if status != "finished:completed":
        raise DeploymentError(f"run {run_id} ended {status}: {details}")
    print(f"run {run_id} completed on {superlink}", file=sys.stderr)
    return run_id
