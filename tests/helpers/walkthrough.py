"""docs/deployment.md's walk-through, run as written: its ```bash blocks in order, with the
documented variables set to free ports and temporary paths on 127.0.0.1. Another doc written
the same way (numbered ``### N.`` steps holding ```bash blocks; docs/operations.md) is run on
the same network with ``Walkthrough(net, doc=...)``.

A block that begins ``# in the image`` is the container form of the block before it (no
Docker in CI) and is not run. Long-running starts are the doc's own ``setsid ... &`` lines;
their pid files give the test each started session, which ``Network.stop`` ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.helpers.deployment_net import (
    BIN,
    REPO,
    SITE_CAP,
    Network,
    base_env,
    descendants,
    embedded_dir_for_tests,
    free_port,
    wait_for_port,
)

DOC = REPO / "docs" / "deployment.md"
OPERATIONS = REPO / "docs" / "operations.md"
SITES = ("cleveland", "hungary")  # the walk-through's hospitals
GUARDED = "va"  # a third hospital whose node trusts only another publisher's apps
WAITING = "oslo"  # registered by the coordinator, its node never started
CONTAINER_FORM = "# in the image"
STEP = re.compile(r"^### (\d+)\. ", re.MULTILINE)
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def walkthrough_blocks(doc: Path = DOC) -> dict[int, list[str]]:
    """Each numbered step's ```bash blocks (container forms left out), from the walk-through
    section, i.e. everything before ``## Reference`` (the whole doc if it has none)."""
    text = doc.read_text().split("\n## Reference", 1)[0]
    marks = list(STEP.finditer(text))
    steps = {}
    for mark, after in zip(marks, [*marks[1:], None]):
        body = text[mark.end() : after.start() if after else len(text)]
        steps[int(mark.group(1))] = [b for b in BLOCK.findall(body) if not b.startswith(CONTAINER_FORM)]
    return steps


@dataclass
class Session:
    """Processes the doc started with ``setsid``: one session, found by its leader's pid."""

    sid: int
    log: Path

    def members(self) -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.sid and fields[0] != "Z":
                found.append(int(stat.parent.name))
        return found

    def alive(self) -> bool:
        return bool(self.members())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.members():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        """TERM the session, then KILL what is left and every descendant (Flower starts its
        SuperExec in a session of its own)."""
        family = {d for pid in self.members() for d in descendants(pid)}
        self.kill(signal.SIGTERM)
        for pid in {*family, *self.members()}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Walkthrough:
    """The doc's variables for one network, and a way to run a step's blocks (of
    docs/deployment.md, or of ``doc``)."""

    def __init__(self, net: Network, doc: Path = DOC):
        self.net, self.steps = net, walkthrough_blocks(doc)
        self.data = embedded_dir_for_tests()
        self.vars = {
            "APP": str(REPO),
            "BIN": str(BIN),
            "PKI": str(net.pki_dir),
            "STATE": str(net.root / "state"),
            "RUNS": str(net.runs_root or net.root.parent),
            "LINK": "127.0.0.1",
            "PROXY_HOST": "127.0.0.1",
            "PROXY_PORT": str(net.port),
            "SUPERLINK_PORT": str(net.control_port),
            "ROUNDS": "2",
            "SPEC": str(REPO / "configs" / "data" / "uci_heart.yaml"),
            "MAX_EPSILON": SITE_CAP,
        }  # as Network.node_env gives restarted nodes

    def site(self, site: str, **extra: str) -> dict[str, str]:
        """A hospital's variables (its folder is the one ``Network`` uses for that site)."""
        folder = self.net.root / "sites" / site
        return {
            "SITE": site,
            "SITE_DIR": str(folder),
            "DATA": str(self.data[site]),
            "NODE_PORT": str(free_port()),
            **extra,
        }

    def _shell(self, step: int, block: int, values: dict[str, str]) -> dict:
        """How a block runs: bash ``set -euo pipefail``, the doc's variables, a folder of its own."""
        env = {**base_env(self.net.root / "shell-home"), **self.vars, **values}
        env.pop("FLWR_HOME")
        cwd = self.net.root / "shell"
        cwd.mkdir(parents=True, exist_ok=True)
        return {"args": ["bash", "-euo", "pipefail", "-c", self.steps[step][block]], "env": env, "cwd": cwd}

    def run(self, step: int, block: int, timeout: float = 120, **values: str) -> subprocess.CompletedProcess:
        """One block as a bash script (``set -euo pipefail``), in a folder of its own."""
        return subprocess.run(
            **self._shell(step, block, values),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self, step: int, block: int, **values: str) -> subprocess.Popen:
        """One block started in a session of its own, its output (both streams) on a pipe:
        ``os.killpg(proc.pid, SIGINT)`` is a Ctrl-C in the terminal that runs it."""
        return subprocess.Popen(
            **self._shell(step, block, values),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def check(self, step: int, block: int, timeout: float = 120, **values: str) -> str:
        proc = self.run(step, block, timeout, **values)
        assert proc.returncode == 0, f"step {step} block {block}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        return proc.stdout

    def started(self, pid_file: Path, log: Path) -> Session:
        session = Session(int(pid_file.read_text()), log)
        self.net.procs.append(session)
        return session

    def start_coordinator(self) -> None:
        """Step 1: CA, server certificate, SuperLink + proxy."""
        self.check(1, 0)
        state = Path(self.vars["STATE"])
        self.started(state / "superlink.pid", state / "superlink.log")
        wait_for_port(self.net.control_port, 90)
        wait_for_port(self.net.port, 90)

    def join(self, site: str, **extra: str) -> int:
        """Steps 2-4 for one hospital: key, registration, data check, node start."""
        values = self.site(site, **extra)
        self.check(2, 0, **values)
        out = self.check(3, 0, **values)
        shutil.copy(self.net.ca_cert, Path(values["SITE_DIR"]) / "ca.pem")  # sent by the coordinator
        assert "PASS" in self.check(4, 0, **values)
        self.check(4, 1, **values)
        folder = Path(values["SITE_DIR"])
        self.net.nodes[site] = self.started(folder / "node.pid", folder / "node.log")
        return int(re.search(r"as node (\d+) at", out).group(1))


@contextmanager
def walkthrough_network(root: Path) -> Iterator[Network]:
    """Steps 1-4 for cleveland and hungary, plus a guarded node and a waiting site: the one
    network the deployment and pinned-code tests share. ``net.walk`` runs later steps."""
    from federation.security import pki
    from federation.security.app_signing import write_trusted_entities

    net = Network(root)
    try:
        walk = Walkthrough(net)
        walk.start_coordinator()  # step 1
        node_ids = {site: walk.join(site) for site in SITES}  # steps 2-4
        node_ids.update({site: net.register(site) for site in (GUARDED, WAITING)})
        pki.create_signing_key("stranger", net.root / "stranger")
        trusted = write_trusted_entities(
            net.root / "sites" / GUARDED / "trusted.yaml", [net.root / "stranger" / "stranger.sign.pub"]
        )
        net.start_node(GUARDED, net.node_env(GUARDED, LHSFED_TRUSTED_ENTITIES=str(trusted)))
        net.wait_online(3, timeout=240)
        net.node_ids, net.walk = node_ids, walk
        yield net
    finally:
        net.stop()
