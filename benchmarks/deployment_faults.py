"""Faults at scale in a real deployment (issue S, item 5): what the coordinator's console says,
what the run folder keeps and what every site's ledger holds afterwards.

The network is the deployment tests' own (``tests/helpers/deployment_net.py``, as
``benchmarks/deployment_scale.py`` uses it): a federation CA, a TLS SuperLink with node
authentication and its state database behind the nginx Fleet-only proxy, N registered
SuperNodes started through ``docker/entrypoint-supernode.sh``, an ``lhsfed synth`` cohort of N
hospitals, and ``lhsfed-train federation=deployment`` with the default DP recipe. One node
(the last) dials the proxy through a TCP relay on 127.0.0.1 (:class:`Relay`) so that its
network alone can be cut. The faults, each in a run of its own on the same network:

- ``superlink``: SIGKILL the SuperLink's whole process tree (a container kill: SuperLink,
  proxy, SuperExec, ServerApp) after round 1, while round 2 trains; start it again on its
  state database; then ``lhsfed-train resume=RUN``.
- ``nodes``: SIGKILL 10 % of the SuperNodes (at least one) while they train round 1; they are
  started again as a restart policy would, and get in once the SuperLink's heartbeat window for
  them has passed.
- ``network``: cut the relayed node's network for ``--drop-s`` seconds (every connection closed,
  new ones refused) while it trains round 1.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.deployment_faults [--nodes 10] [--faults ...]

Writes ``benchmarks/results/faults.md`` and ``benchmarks/results/deployment_faults.json``;
``tests/integration/test_faults_at_scale.py`` runs the same faults on a small network in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import BIN, REPO, machine_info, synth_cohort
from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.core.records import read_rounds
from federation.core.run_layout import SUMMARY

# The deployment tests' network (tests/helpers is importable code, as in deployment_scale.py).
from tests.helpers.deployment_net import Network, Proc, base_env, descendants, free_port

RESULTS = REPO / "benchmarks" / "results"
OUT_MD, OUT_JSON = RESULTS / "faults.md", RESULTS / "deployment_faults.json"
TRAIN_RECEIVED = "Receiving: train message"


class Relay:
    """A TCP relay on 127.0.0.1 in front of the proxy, for one hospital: :meth:`drop` cuts
    its network (open connections closed, new ones refused) until :meth:`restore`."""

    def __init__(self, target_port: int):
        self.target, self.port = target_port, free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self.restore()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def drop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:  # wakes the thread blocked in accept(); a bare close() would leave it listening
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # dropped
            if self._server is not server:  # accepted as the drop came: cut it too
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:  # the proxy is down: answer as its refused port would, with a reset
                # (a plain close is a TLS EOF to the node, which Flower takes as fatal and exits)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class FaultNetwork:
    """N hospitals of a synth cohort on one deployment; the last one behind :class:`Relay`."""

    work: Path
    n: int
    rows_per_site: int = 300
    net: Network = field(init=False)
    sites: list[str] = field(init=False)
    relay: Relay | None = None
    cohort: Path = field(init=False)
    spec: Path = field(init=False)
    restarts: dict[str, int] = field(default_factory=dict)
    _stopping: bool = False

    def __post_init__(self) -> None:
        self.cohort = self.work / "cohort"
        self.spec = synth_cohort(
            self.cohort, sites=self.n, rows=self.n * self.rows_per_site, heterogeneity=0.0
        )
        self.sites = [f"hospital_{i:03d}" for i in range(1, self.n + 1)]
        root = self.work / "net"
        shutil.rmtree(root, ignore_errors=True)
        (root / "runs").mkdir(parents=True)
        self.net = Network(root, runs_root=root / "runs")

    @property
    def relayed(self) -> str:
        return self.sites[-1]

    def start(self, timeout: float = 240) -> None:
        self.net.make_pki()
        self.net.start_superlink()
        for site in self.sites:
            self.net.register(site)
        self.relay = Relay(self.net.port)
        for site in self.sites:
            self.start_node(site)
        self.wait_online(timeout)
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self) -> None:
        """docker/compose.yaml's ``restart: unless-stopped``: a node that exits (killed, or
        Flower giving up on a TLS error while its network was cut) is started again."""
        while not self._stopping:
            for site in self.sites:
                node = self.net.nodes.get(site)
                if node is not None and not node.alive() and not self._stopping:
                    self.restarts[site] = self.restarts.get(site, 0) + 1
                    self.start_node(site, tag=f"-restart{self.restarts[site]}")
            time.sleep(3)

    def start_node(self, site: str, tag: str = "") -> Proc:
        env = self.net.node_env(
            site, LHSFED_DATA_PATH=str(self.cohort / f"{site}.parquet"), LHSFED_SPEC_PATH=str(self.spec)
        )
        if site == self.relayed and self.relay is not None:
            env["LHSFED_SUPERLINK"] = self.relay.address
        return self.net.start_node(site, env, tag=tag)

    def wait_online(self, timeout: float) -> None:
        self.net.wait_online(self.n, timeout=timeout)

    def train_command(self, run_dir: Path, rounds: int, *extra: str) -> list[str]:
        return [
            str(BIN / "lhsfed-train"),
            "--config-dir",
            str(self.cohort),
            "data=bench",
            "federation=deployment",
            f"superlink={self.net.control_address}",
            f"federation.ca_cert={self.net.ca_cert}",
            f"rounds={rounds}",
            "early_stopping.patience=0",
            f"hydra.run.dir={run_dir}",
            *extra,
        ]

    def coordinator(self, command: list[str]) -> Coordinator:
        env = {**base_env(self.net.root / "coordinator-home"), "PYTHONPATH": str(REPO)}
        return Coordinator(command, cwd=self.net.root, env=env)

    def trains_received(self, site: str) -> int:
        """Train messages the site's nodes received, every restart's log included."""
        logs = (self.net.root / "sites" / site).glob("supernode*.log")
        return sum(log.read_text(errors="replace").count(TRAIN_RECEIVED) for log in logs)

    def ledger(self, site: str, run: Path) -> list[dict]:
        """The site's ledger rows of ``run``, read through its own class (what the node reads)."""
        folder = self.net.root / "sites" / site
        path = folder / "ledger" / "ledger.sqlite"
        if not path.exists():
            return []
        identity = NodeIdentity.of_key(folder / f"{site}.key")
        entries = SiteLedger(path, identity=identity, site=site).entries(str(run))
        return [
            {
                "round": e.server_round,
                "release": e.release or "training",
                "epsilon_run": round(e.epsilon_run, 4),
            }
            for e in entries
        ]

    def kill_superlink(self) -> None:
        """A container kill: the SuperLink's session and everything it started (SuperExec and
        ServerApp run in sessions of their own)."""
        superlink = self.net.procs[0]
        family = descendants(superlink.popen.pid)
        superlink.kill()
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.net.procs.remove(superlink)

    def restart_superlink(self) -> None:
        proc = self.net.start_superlink()
        self.net.procs.remove(proc)
        self.net.procs.insert(0, proc)  # first: kill_superlink's

    def stop(self) -> None:
        self._stopping = True
        if self.relay is not None:
            self.relay.drop()
        self.net.stop()


class Coordinator:
    """``lhsfed-train`` in its own session, its console collected line by line with times."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict[str, str]):
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip()))

    def saw(self, text: str) -> bool:
        return any(text in line for _, line in self.lines)

    def wait(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self._reader.join(timeout=10)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def console(self) -> list[str]:
        return [line for _, line in self.lines]


def wait_until(predicate, timeout: float, what: str) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise TimeoutError(what)
        time.sleep(0.5)
    return time.monotonic() - began


def _outcome(fn: FaultNetwork, run_dir: Path, runs: list[tuple[str, Coordinator, int]]) -> dict:
    summary = json.loads((run_dir / SUMMARY).read_text()) if (run_dir / SUMMARY).is_file() else None
    return {
        "runs": [{"command": what, "exit": code, "console": c.console()} for what, c, code in runs],
        "rounds": [
            {"round": r["round"], "trained": sorted(r["train"]), "aggregated": r.get("aggregated", [])}
            for r in read_rounds(run_dir)
        ],
        "run_folder": sorted(p.name for p in run_dir.iterdir()),
        "privacy": (summary or {}).get("privacy"),
        "ledgers": {site: fn.ledger(site, run_dir) for site in fn.sites},
    }


PUSHED = "[Fleet.PushMessages] Push replies from node_id"


def fault_superlink(
    fn: FaultNetwork,
    rounds: int = 2,
    when: str = "replies",
    cut_s: float = 0.0,
    round_timeout: float | None = None,
    timeout: float = 600,
) -> dict:
    """Kill the SuperLink in round 2, restart it on its state database, resume the run.

    ``when="replies"``: once every site (but a cut one) has pushed its round-2 update (each
    kept it, so the resumed run's round 2 gets the same updates at no new charge,
    client.kept_updates); ``"training"``: a second after the first site received round 2
    (sites paid, mid-training: the resumed run trains round 2 again, and says what the first
    attempt cost).

    ``cut_s`` > 0: the relayed hospital's network is also cut, for ``cut_s`` from the moment
    it has round 1's train message (it trains and pays, but its update cannot leave); the run
    goes on without it (``round_timeout`` below ``cut_s``), and the resume waits for its network
    to be back. Both faults in one run: what CI can afford (tests/integration/test_faults_at_scale.py).
    """
    run_dir = fn.net.root / "runs" / f"superlink-{when}{'-cut' if cut_s else ''}"
    log = fn.net.root / "superlink.log"
    before = {s: fn.trains_received(s) for s in fn.sites}
    cut = fn.relayed if cut_s else None
    live = [s for s in fn.sites if s != cut]
    extra = [f"strategy.round_timeout={round_timeout:g}"] if round_timeout else []
    first = fn.coordinator(fn.train_command(run_dir, rounds, *extra))
    restore_at = None
    try:
        if cut:
            wait_until(
                lambda: fn.trains_received(cut) > before[cut] or first.proc.poll() is not None,
                timeout,
                "round 1 at the node to cut",
            )
            fn.relay.drop()
            restore_at = time.monotonic() + cut_s
        wait_until(
            lambda: first.saw(f"round   1/{rounds}") or first.proc.poll() is not None, timeout, "round 1"
        )
        if when == "replies":
            pushed = log.read_text(errors="replace").count(PUSHED)
            wait_until(
                lambda: (
                    log.read_text(errors="replace").count(PUSHED) >= pushed + len(live)
                    or first.proc.poll() is not None
                ),
                timeout,
                "round 2's replies",
            )
        else:
            wait_until(
                lambda: (
                    any(fn.trains_received(s) >= before[s] + 2 for s in live) or first.proc.poll() is not None
                ),
                timeout,
                "round 2's train message",
            )
            time.sleep(1)  # the sites reserve round 2's ε, then train
        killed_at = time.monotonic() - first.started
        fn.kill_superlink()
        code = first.wait(120)
    finally:
        first.kill()
    fn.restart_superlink()
    if restore_at is not None:
        time.sleep(max(0.0, restore_at - time.monotonic()))
        fn.relay.restore()
    back = wait_until(lambda: _online(fn) >= fn.n, 240, "the nodes did not come back")
    resumed = fn.coordinator([str(BIN / "lhsfed-train"), f"resume={run_dir}"])
    resumed_code = resumed.wait(timeout)
    result = _outcome(
        fn, run_dir, [("lhsfed-train", first, code), ("lhsfed-train resume=RUN", resumed, resumed_code)]
    )
    return result | {
        "when": when,
        "run_dir": str(run_dir),
        "cut": cut,
        "cut_s": cut_s,
        "killed_at_s": round(killed_at, 1),
        "nodes_back_after_s": round(back, 1),
        "node_restarts": dict(fn.restarts),
    }


def _online(fn: FaultNetwork) -> int:
    try:
        return len(fn.net.online_nodes())
    except Exception:  # noqa: BLE001 - the SuperLink may still be starting
        return 0


def fault_network(
    fn: FaultNetwork, drop_s: float = 60, rounds: int = 2, round_timeout: float = 45, timeout: float = 600
) -> dict:
    """Cut the relayed hospital's network for ``drop_s`` as soon as it has round 1's train
    message (it trains, then cannot send its update until the network is back). With
    ``round_timeout`` under ``drop_s`` its rounds close without it."""
    run_dir = fn.net.root / "runs" / "network"
    site = fn.relayed
    before = fn.trains_received(site)
    run = fn.coordinator(fn.train_command(run_dir, rounds, f"strategy.round_timeout={round_timeout:g}"))
    try:
        wait_until(
            lambda: fn.trains_received(site) > before or run.proc.poll() is not None,
            timeout,
            "round 1 at the node",
        )
        dropped_at = time.monotonic() - run.started
        fn.relay.drop()
        time.sleep(drop_s)
        fn.relay.restore()
        code = run.wait(timeout)
    finally:
        run.kill()
        if fn.relay._server is None:
            fn.relay.restore()
    return _outcome(fn, run_dir, [("lhsfed-train", run, code)]) | {
        "dropped_at_s": round(dropped_at, 1),
        "drop_s": drop_s,
        "round_timeout_s": round_timeout,
        "site": site,
    }


def fault_nodes(fn: FaultNetwork, share: float = 0.1, rounds: int = 2, timeout: float = 600) -> dict:
    """SIGKILL ``share`` of the hospitals (at least one; never the relayed one) while they train
    round 1; the supervisor starts each again, and it is let in once the SuperLink's
    heartbeat window for it has passed."""
    run_dir = fn.net.root / "runs" / "nodes"
    victims = fn.sites[: max(1, int(len(fn.sites) * share))]
    before = {s: fn.trains_received(s) for s in victims}
    run = fn.coordinator(fn.train_command(run_dir, rounds, "strategy.round_timeout=90"))
    try:
        wait_until(
            lambda: all(fn.trains_received(s) > before[s] for s in victims) or run.proc.poll() is not None,
            timeout,
            "round 1 at the victims",
        )
        time.sleep(1)  # reserved, training
        killed_at = time.monotonic() - run.started
        for site in victims:  # the supervisor starts each again (restart: unless-stopped)
            fn.net.nodes[site].kill()
        code = run.wait(timeout)
    finally:
        run.kill()
    return _outcome(fn, run_dir, [("lhsfed-train", run, code)]) | {
        "killed": victims,
        "killed_at_s": round(killed_at, 1),
        "node_restarts": dict(fn.restarts),
    }


FAULTS = {
    "superlink (replies pushed)": lambda fn: fault_superlink(fn, when="replies"),
    "superlink (sites training)": lambda fn: fault_superlink(fn, when="training"),
    "nodes": fault_nodes,
    "network": fault_network,
}
# The console lines a reader of the results needs (the rest is in each run's launcher.log).
SHOWN = ("round ", "ε charged", "error", "handed out", "resumed", "stopped answering", "submitted")


def render(results: dict) -> str:
    """faults.md: per fault, the console's lines, the rounds, and what the ledgers hold."""
    lines = [
        "# Faults at scale: a deployment of N hospitals (issue S, item 5)",
        "",
        f"Command: `{results['command']}`",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()),
        f"Load average before {results['load_before']}, after {results['load_after']}.",
        f"Nodes: {results['nodes']} SuperNodes on 127.0.0.1 behind the Fleet-only proxy, TLS and node",
        "authentication, each an `lhsfed synth` hospital; the default DP recipe (ε target 3).",
        "",
    ]
    for name, fault in results["faults"].items():
        lines += [f"## {name}", ""]
        if "error" in fault:
            lines += [f"**Did not complete:** {fault['error']}", ""]
            continue
        facts = {
            k: v for k, v in fault.items() if k.endswith("_s") or k in ("killed", "restarts", "site", "when")
        }
        lines += [f"- {k}: {v}" for k, v in facts.items()] + [""]
        for run in fault["runs"]:
            lines += [f"`{run['command']}` exited {run['exit']}; its console:", "", "```"]
            lines += [line for line in run["console"] if any(mark in line for mark in SHOWN)] + ["```", ""]
        lines += ["| round | trained | aggregated |", "|---|---|---|"]
        lines += [
            f"| {r['round']} | {len(r['trained'])} | {len(r['aggregated'])} |" for r in fault["rounds"]
        ] + [""]
        privacy = fault.get("privacy") or {}
        lines += [
            f"summary.json `charged_not_aggregated`: `{json.dumps(privacy.get('charged_not_aggregated'))}`; "
            f"`unconfirmed`: `{json.dumps(privacy.get('unconfirmed'))}`",
            "",
            "| site | training rounds charged (ledger) | ε of this run (ledger) | ε in summary.json |",
            "|---|---|---|---|",
        ]
        reported = privacy.get("sites") or {}
        for site, rows in fault["ledgers"].items():
            trained = [r["round"] for r in rows if r["release"] == "training"]
            last = rows[-1]["epsilon_run"] if rows else 0.0
            shown = (reported.get(site) or {}).get("epsilon")
            lines.append(f"| {site} | {trained} | {last:.3f} | {'–' if shown is None else f'{shown:.3f}'} |")
        lines += ["", f"Run folder afterwards: {', '.join(fault['run_folder'])}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rows-per-site", type=int, default=300)
    parser.add_argument(
        "--faults",
        nargs="+",
        type=int,
        default=list(range(len(FAULTS))),
        help="which faults, by number: " + ", ".join(f"{i} {name}" for i, name in enumerate(FAULTS)),
    )
    parser.add_argument("--drop-s", type=float, default=60)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="lhsfed-faults-"))
    given = sys.argv[1:] if argv is None else argv
    results = {
        "command": " ".join(["python -m benchmarks.deployment_faults", *given]),
        "machine": machine_info(),
        "nodes": args.nodes,
        "load_before": os.getloadavg(),
        "faults": {},
    }
    fn = FaultNetwork(work, n=args.nodes, rows_per_site=args.rows_per_site)
    try:
        fn.start()
        for name in [list(FAULTS)[i] for i in args.faults]:
            began = time.monotonic()
            try:
                kwargs = {"drop_s": args.drop_s} if name == "network" else {}
                results["faults"][name] = FAULTS[name](fn, **kwargs)
            except Exception as err:  # noqa: BLE001 - where and why it broke is a result
                results["faults"][name] = {"error": f"{type(err).__name__}: {err}"}
            results["faults"][name]["wall_s"] = round(time.monotonic() - began, 1)
            fn.wait_online(300)
    finally:
        fn.stop()
    results["load_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
    OUT_MD.write_text(render(results) + "\n")
    print(OUT_MD.read_text())
    return results


if __name__ == "__main__":
    main()
