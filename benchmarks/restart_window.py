"""How long the SuperLink refuses a SIGKILLed hospital node, and what a refused restart exits.

Two hospitals on 127.0.0.1 through the entrypoints (tests/helpers/deployment_net.py), one SIGKILL,
then restarts as a container restart policy would, each recorded as (seconds after the kill
it began, exit status, Flower's exit-code line). Also prints ``lhsfed nodes`` before and
after. Run: ``PYTHONPATH=$PWD .venv/bin/python -m benchmarks.restart_window OUT_DIR``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from federation.coordinator.superlink_nodes import list_nodes
from tests.helpers.deployment_net import Network

ADMITTED = "SuperNode ID:"  # what flower-supernode logs once the SuperLink activated it


def _refusal_line(log: str) -> str:
    return next(
        (line.split("Exit Code:")[1].strip() for line in log.splitlines() if "Exit Code:" in line), ""
    )


def restart_until_served(net: Network, site: str, killed_at: float, limit_s: float = 300) -> list:
    attempts: list[dict] = []
    while time.monotonic() - killed_at < limit_s:
        began = time.monotonic() - killed_at
        proc = net.start_node(site, net.node_env(site), tag=f"-restart{len(attempts)}")
        while proc.alive() and ADMITTED not in proc.output():
            time.sleep(1)
        if proc.alive():
            attempts.append({"began_s": round(began, 1), "status": None})
            return attempts
        attempts.append(
            {
                "began_s": round(began, 1),
                "status": proc.popen.returncode,
                "ended_s": round(time.monotonic() - killed_at, 1),
                "flower_exit_code": _refusal_line(proc.output()),
            }
        )
        time.sleep(2)
    return attempts


def main(out: Path) -> dict:
    net = Network(out)
    try:
        net.make_pki()
        net.start_superlink()
        for site in ("cleveland", "hungary"):
            net.register(site)
            net.start_node(site)
        net.wait_online(2)
        time.sleep(5)
        net.nodes["cleveland"].kill(signal.SIGKILL)
        killed_at = time.monotonic()
        after_kill = [vars(row) for row in list_nodes(net.control_address, net.ca_cert)]
        attempts = restart_until_served(net, "cleveland", killed_at)
        return {"after_kill": after_kill, "attempts": attempts}
    finally:
        net.stop()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), indent=1))
