"""Deployment scale: N hospital SuperNodes on 127.0.0.1 through the Fleet-only proxy (issue S, item 3).

For each N the benchmark starts a real deployment exactly as the deployment tests do
(``tests/helpers/deployment_net.py``, as ``benchmarks/restart_window.py`` does): a federation
CA, a TLS SuperLink with node authentication behind its nginx proxy
(``docker/entrypoint-superlink.sh``), N registered node keys, and N SuperNodes started through
``docker/entrypoint-supernode.sh`` (node + pinned ClientApp runner, one session each), every
one dialling the proxy. Data: an ``lhsfed synth`` cohort of N equal hospitals
(``--heterogeneity 0``, ``--rows-per-site`` each), every node with its own Parquet file and the
cohort's spec. Then ``lhsfed-train federation=deployment`` runs a short DP federation (the
default recipe, ``--rounds`` rounds, no early stop) over all N.

Measured per N: time from launching the N nodes until the SuperLink lists all N online;
each round's wall time (from the round lines the coordinator streams); CPU seconds and peak
RSS of the SuperLink (``flower-superlink``), of the ServerApp process, of nginx and of the
coordinator; per-node peak RSS (the node's whole session: entrypoint, ``flower-supernode``,
runner, the per-task ClientApp processes) and PSS; bytes through the proxy per round (nginx's
own read/write counters, ``/proc/PID/io``, both sides of the proxy, TLS included; and the
response bytes its access log records); the load average before and after. A sampler thread
reads ``/proc`` every ``--interval`` seconds (RSS and CPU from ``/proc/PID/stat``; PSS from
``smaps_rollup`` every 5th sample); CPU of a process that lived less than one interval can
be missed.

Safety: servers listen on 127.0.0.1 only, on free ports; every process is in a session the
``Network`` stops in a ``finally``; an N is not started when the memory it would need (the
previous N's per-node PSS times N, plus 2 GiB) is not available, and a run is stopped when
available memory falls under ``--min-free-gib``.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.deployment_scale [--nodes 5 10 20 30 40] [--quick]

Writes ``benchmarks/results/scale.md`` (the "Deployment curve" section; other sections of the
file are kept) and ``benchmarks/results/deployment_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import BIN, REPO, machine_info, synth_cohort
from federation.coordinator.superlink_nodes import list_nodes

# The deployment tests' network, reused as benchmarks/restart_window.py does: the same
# entrypoints, environment and process-group handling (tests/helpers is importable code).
from tests.helpers.deployment_net import Network, base_env

RESULTS = REPO / "benchmarks" / "results"
OUT_MD, OUT_JSON = RESULTS / "scale.md", RESULTS / "deployment_scale.json"
SECTION = "## Deployment curve"
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
GIB = 2**30
ROUND_LINE = re.compile(r"round\s+(\d+)/(\d+)")
ACCESS = re.compile(r'"(?:GET|POST) (/v1/fleet/[a-z-]+) HTTP/[\d.]+" (\d{3}) (\d+)')
KINDS = (  # process kinds, by command line (first match)
    ("flower-superlink", "superlink"),
    ("flwr-serverapp", "serverapp"),
    ("flower-superexec", "superexec"),
    ("nginx", "nginx"),
    ("flower-supernode", "supernode"),
    ("pinned_runner serve", "runner"),
    ("pinned_runner task", "task"),
    ("lhsfed-train", "coordinator"),
    ("flwr", "flwr-cli"),
)


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _kind(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    return next((kind for needle, kind in KINDS if needle in cmd), "other")


class Sampler:
    """Per-process CPU and RSS of several process trees (by label), sampled from /proc."""

    def __init__(self, interval: float):
        self.interval, self.roots = interval, {}
        self.proc: dict[int, dict] = {}  # pid -> {label, kind, cpu, rss, pss}
        self.tree_peak: dict[str, dict[str, int]] = {}  # label -> {rss, pss} peaks of tree sums
        self.io: dict[int, tuple[int, int]] = {}  # nginx pid -> (rchar, wchar)
        self.now: dict[str, dict[str, int]] = {}  # label -> the last sample's tree sums
        self.min_available = mem_available()
        self._stop, self._lock, self._count = threading.Event(), threading.Lock(), 0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, label: str, pid: int) -> None:
        with self._lock:
            self.roots[label] = pid

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as err:  # noqa: BLE001 - a sampler must not end the benchmark
                print(f"sampler: {err!r}", file=sys.stderr)
            self._stop.wait(self.interval)

    def sample(self, pss: bool = False) -> None:
        stats: dict[int, tuple[int, float, int]] = {}  # pid -> (ppid, cpu s, rss bytes)
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pid, ppid = int(entry.name), int(fields[1])
            stats[pid] = (ppid, (int(fields[11]) + int(fields[12])) / HZ, int(fields[21]) * PAGE)
            children.setdefault(ppid, []).append(pid)
        with_pss = pss or self._count % 5 == 0
        self._count += 1
        with self._lock:
            roots = dict(self.roots)
        for label, root in roots.items():
            todo, rss_sum, pss_sum = [root], 0, 0
            while todo:
                pid = todo.pop()
                todo.extend(children.get(pid, []))
                if pid not in stats:
                    continue
                _, cpu, rss = stats[pid]
                row = self.proc.setdefault(pid, {"label": label, "kind": _kind(pid), "cpu": 0.0, "rss": 0})
                row["cpu"], row["rss"] = max(row["cpu"], cpu), max(row["rss"], rss)
                rss_sum += rss
                if with_pss:
                    pss = _pss(pid)
                    row["pss"] = max(row.get("pss", 0), pss)
                    pss_sum += pss
                if row["kind"] == "nginx":
                    self.io[pid] = _io(pid) or self.io.get(pid, (0, 0))
            self.now[label] = {"rss": rss_sum, **({"pss": pss_sum} if with_pss else {})}
            peak = self.tree_peak.setdefault(label, {"rss": 0, "pss": 0})
            peak["rss"] = max(peak["rss"], rss_sum)
            peak["pss"] = max(peak["pss"], pss_sum)
        self.min_available = min(self.min_available, mem_available())

    def cpu(self, label_prefix: str = "", kind: str | None = None) -> float:
        """CPU seconds so far (last seen per process) of the matching processes."""
        return sum(
            r["cpu"]
            for r in self.proc.values()
            if r["label"].startswith(label_prefix) and (kind is None or r["kind"] == kind)
        )

    def peak(self, label_prefix: str = "", kind: str | None = None, key: str = "rss") -> int:
        """Largest single-process peak of the matching processes."""
        return max(
            (
                r.get(key, 0)
                for r in self.proc.values()
                if r["label"].startswith(label_prefix) and (kind is None or r["kind"] == kind)
            ),
            default=0,
        )

    def nginx_bytes(self) -> int:
        """Bytes nginx has read plus written (both sides of the proxy), so far."""
        return sum(r + w for r, w in self.io.values())


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _io(pid: int) -> tuple[int, int] | None:
    try:
        values = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        return int(values["rchar"]), int(values["wchar"])
    except (OSError, KeyError, ValueError):
        return None


def online_count(net: Network) -> int:
    try:
        return sum(row.status == "online" for row in list_nodes(net.control_address, net.ca_cert))
    except Exception:  # noqa: BLE001 - the SuperLink may be busy; count it as not yet
        return -1


def access_log(net: Network) -> dict:
    """Fleet requests and response bytes nginx logged (the SuperLink's log holds its stdout)."""
    per: dict[str, dict[str, int]] = {}
    for method, status, size in ACCESS.findall((net.root / "superlink.log").read_text(errors="replace")):
        row = per.setdefault(method.rsplit("/", 1)[1], {"requests": 0, "response_bytes": 0, "non_200": 0})
        row["requests"] += 1
        row["response_bytes"] += int(size)
        row["non_200"] += status != "200"
    return per


def train_command(net: Network, cohort: Path, n: int, rounds: int, run_dir: Path) -> list[str]:
    return [
        str(BIN / "lhsfed-train"),
        "--config-dir",
        str(cohort),
        "data=bench",
        "federation=deployment",
        f"superlink={net.control_address}",
        f"federation.ca_cert={net.ca_cert}",
        f"rounds={rounds}",
        "early_stopping.patience=0",
        f"strategy.min_available_nodes={n}",
        f"hydra.run.dir={run_dir}",
    ]


def run_one(n: int, args: argparse.Namespace, work: Path) -> dict:
    """One N: start, idle, run, stop. Never leaves a process behind (``Network.stop``)."""
    cohort = work / f"cohort_{n}"
    spec = synth_cohort(cohort, sites=n, rows=n * args.rows_per_site, heterogeneity=0.0)
    sites = [f"hospital_{i:03d}" for i in range(1, n + 1)]
    root = work / f"net_{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    net = Network(root, runs_root=root / "runs")
    (root / "runs").mkdir()
    result: dict = {"nodes": n, "rounds_planned": args.rounds, "load_before": load()}
    sampler = Sampler(args.interval)
    coordinator = None
    try:
        net.make_pki()
        net.start_superlink()
        sampler.watch("superlink", net.procs[0].popen.pid)
        sampler.start()
        began = time.monotonic()
        for site in sites:
            net.register(site)
        result["register_s"] = time.monotonic() - began
        cpu0 = sampler.cpu("superlink", "superlink")
        began = time.monotonic()
        for site in sites:
            env = net.node_env(
                site, LHSFED_DATA_PATH=str(cohort / f"{site}.parquet"), LHSFED_SPEC_PATH=str(spec)
            )
            sampler.watch(f"node:{site}", net.start_node(site, env).popen.pid)
        first = None
        while True:
            count = online_count(net)
            now = time.monotonic() - began
            if count >= 1 and first is None:
                first = now
            if count >= n:
                break
            dead = [s for s in sites if not net.nodes[s].alive()]
            if dead:
                raise RuntimeError(f"{len(dead)} node(s) exited while starting, e.g. {dead[0]}")
            if now > args.start_timeout:
                raise TimeoutError(f"{count} of {n} nodes online after {args.start_timeout:.0f} s")
            check_memory(sampler, args)
            time.sleep(1)
        result.update(start_all_online_s=now, start_first_online_s=first)
        result["superlink_cpu_start_s"] = sampler.cpu("superlink", "superlink") - cpu0
        # Idle: every node polls the SuperLink through the proxy.
        sampler.sample()
        cpu0, io0, t0 = sampler.cpu("superlink", "superlink"), sampler.nginx_bytes(), time.monotonic()
        time.sleep(args.idle)
        sampler.sample(pss=True)
        idle = time.monotonic() - t0
        result["idle_superlink_cpu_pct"] = 100 * (sampler.cpu("superlink", "superlink") - cpu0) / idle
        result["idle_proxy_bytes_per_s"] = (sampler.nginx_bytes() - io0) / idle
        result["idle_node_rss_mib"] = _node_trees(sampler, "rss")
        result["idle_node_pss_mib"] = _node_trees(sampler, "pss")
        result["idle_superlink_rss_mib"] = sampler.now.get("superlink", {}).get("rss", 0) / 2**20
        # The run.
        run_dir = root / "runs" / "run"
        command = train_command(net, cohort, n, args.rounds, run_dir)
        env = {**base_env(root / "coordinator-home"), "PYTHONPATH": str(REPO)}
        cpu0 = sampler.cpu("superlink", "superlink")
        io0 = sampler.nginx_bytes()
        started = time.monotonic()
        coordinator = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        sampler.watch("coordinator", coordinator.pid)
        lines, marks = [], [(0, 0.0, io0)]
        reader = threading.Thread(
            target=_read, args=(coordinator, lines, marks, sampler, started), daemon=True
        )
        reader.start()
        while coordinator.poll() is None:
            if time.monotonic() - started > args.run_timeout:
                raise TimeoutError(f"run not finished after {args.run_timeout:.0f} s")
            check_memory(sampler, args)
            time.sleep(1)
        reader.join(timeout=30)
        sampler.sample()
        result["run_wall_s"] = time.monotonic() - started
        result["submitted_s"] = marks[0][1]
        result["run_exit"] = coordinator.returncode
        result["run_tail"] = lines[-12:]
        result["rounds"] = [
            {
                "round": r,
                "end_s": round(t, 2),
                "wall_s": round(t - t_prev, 2),
                "proxy_bytes": b - b_prev,
            }
            for (r, t, b), (_, t_prev, b_prev) in zip(marks[1:], marks[:-1])
        ]
        result["run_proxy_bytes"] = sampler.nginx_bytes() - io0
        result["superlink_cpu_run_s"] = sampler.cpu("superlink", "superlink") - cpu0
        summary = run_dir / "summary.json"
        if summary.exists():
            data = json.loads(summary.read_text())
            result["sites_trained"] = data.get("sites_trained")
            result["run_rounds"] = data.get("rounds")
        result["access_log"] = access_log(net)
        if coordinator.returncode != 0:
            result["error"] = f"lhsfed-train exited {coordinator.returncode}: " + " | ".join(lines[-3:])
    except Exception as err:  # noqa: BLE001 - recorded: where and why it broke is a result
        result["error"] = f"{type(err).__name__}: {err}"
        result["node_log_tail"] = _first_failing_log(net)
    finally:
        if coordinator is not None and coordinator.poll() is None:
            os.killpg(coordinator.pid, signal.SIGKILL)
            coordinator.wait(timeout=30)
        sampler.stop()
        net.stop()
        result["load_after"] = load()
    result.update(_memory_and_cpu(sampler, n))
    result["min_mem_available_gib"] = sampler.min_available / GIB
    left = leftovers(root)
    if left:
        result["leftovers_killed"] = left
    return result


def check_memory(sampler: Sampler, args: argparse.Namespace) -> None:
    if mem_available() < args.min_free_gib * GIB:
        raise MemoryError(f"available memory under {args.min_free_gib} GiB: stopped to protect the machine")


def _read(proc: subprocess.Popen, lines: list, marks: list, sampler: Sampler, started: float) -> None:
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("submitted run") and len(marks) == 1:  # round 1 counts from here
            sampler.sample()
            marks[0] = (0, time.monotonic() - started, sampler.nginx_bytes())
        match = ROUND_LINE.search(line)
        if match and int(match.group(1)) > marks[-1][0]:
            sampler.sample()
            marks.append((int(match.group(1)), time.monotonic() - started, sampler.nginx_bytes()))


def _node_trees(sampler: Sampler, key: str) -> dict[str, float]:
    """The last sample's per-node tree sums (MiB): median and max over nodes."""
    values = sorted(v.get(key, 0) for k, v in sampler.now.items() if k.startswith("node:")) or [0]
    return {"median": values[len(values) // 2] / 2**20, "max": values[-1] / 2**20}


def _memory_and_cpu(sampler: Sampler, n: int) -> dict:
    trees = {k: v for k, v in sampler.tree_peak.items() if k.startswith("node:")}
    rss = sorted(v["rss"] for v in trees.values()) or [0]
    pss = sorted(v["pss"] for v in trees.values()) or [0]
    mib = 2**20
    return {
        "superlink_cpu_total_s": sampler.cpu("superlink", "superlink"),
        "superlink_peak_rss_mib": sampler.peak("superlink", "superlink") / mib,
        "serverapp_cpu_s": sampler.cpu("superlink", "serverapp"),
        "serverapp_peak_rss_mib": sampler.peak("superlink", "serverapp") / mib,
        "superexec_cpu_s": sampler.cpu("superlink", "superexec"),
        "nginx_cpu_s": sampler.cpu("superlink", "nginx"),
        "nginx_peak_rss_mib": sampler.peak("superlink", "nginx") / mib,
        "coordinator_cpu_s": sampler.cpu("coordinator"),
        "coordinator_peak_rss_mib": sampler.tree_peak.get("coordinator", {}).get("rss", 0) / mib,
        "node_tree_peak_rss_mib": {"median": rss[len(rss) // 2] / mib, "max": rss[-1] / mib},
        "node_tree_peak_pss_mib": {"median": pss[len(pss) // 2] / mib, "max": pss[-1] / mib},
        "nodes_peak_pss_sum_gib": sum(pss) / GIB,
        "node_process_peak_rss_mib": {
            kind: sampler.peak("node:", kind) / mib for kind in ("supernode", "runner", "task")
        },
        "node_process_peak_pss_mib": {
            kind: sampler.peak("node:", kind, "pss") / mib for kind in ("supernode", "runner", "task")
        },
        "nodes_cpu_s": {
            kind: sampler.cpu("node:", kind) / max(n, 1) for kind in ("supernode", "runner", "task", "other")
        },
    }


def _first_failing_log(net: Network) -> str:
    for site, proc in net.nodes.items():
        if not proc.alive():
            return f"{site}: " + proc.output()[-1500:]
    return (net.root / "superlink.log").read_text(errors="replace")[-1500:] if net.root.exists() else ""


def leftovers(root: Path, grace: float = 15.0) -> list[str]:
    """Processes still naming this N's folder in their command line after ``Network.stop``
    (slow exits get ``grace`` seconds; what is left then is SIGKILLed here, by pid, and
    reported: nothing is left running)."""
    deadline, needle = time.monotonic() + grace, str(root).encode()
    while True:
        found = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                    cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                except (OSError, IndexError):
                    continue
                if needle in cmd and stat[0] != "Z":
                    found[int(entry.name)] = cmd.split(b"\0")[0].decode(errors="replace")
        if not found or time.monotonic() > deadline:
            break
        time.sleep(1)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [f"{pid} {cmd}" for pid, cmd in found.items()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[5, 10, 20, 30, 40])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows-per-site", type=int, default=400)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds all nodes idle before the run")
    parser.add_argument("--interval", type=float, default=0.5, help="sampling period, seconds")
    parser.add_argument("--start-timeout", type=float, default=600.0)
    parser.add_argument("--run-timeout", type=float, default=1800.0)
    parser.add_argument("--min-free-gib", type=float, default=2.0)
    parser.add_argument("--max-nodes", type=int, default=40, help="never start more nodes than this")
    parser.add_argument(
        "--time-budget", type=float, default=3600.0, help="skip an N whose predicted time would pass this"
    )
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=2, 1 round, nothing written")
    parser.add_argument(
        "--append", action="store_true", help="add these rows to those of an earlier deployment_scale.json"
    )
    args = parser.parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: every ``finally`` runs and stops the N's processes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.quick:
        args.nodes, args.rounds, args.idle = [2], 1, 5.0
    command = "python -m benchmarks.deployment_scale " + " ".join(sys.argv[1:] if argv is None else argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="lhsfed-deploy-scale-"))
    info = machine_info()
    runs, per_node_gib, began, last = [], None, time.monotonic(), None
    for n in args.nodes:
        if last is not None:  # wall time grows about linearly in N (every site's CPU, 2 cores)
            predicted = last[1] * n / last[0]
            if time.monotonic() - began + predicted > args.time_budget:
                runs.append(
                    {"nodes": n, "error": f"not run: predicted {predicted / 60:.0f} min, past --time-budget"}
                )
                break
        if n > args.max_nodes:
            runs.append({"nodes": n, "error": f"not run: above --max-nodes {args.max_nodes}"})
            continue
        need = (per_node_gib or 0.4) * n + 2
        if mem_available() / GIB < need:
            runs.append(
                {"nodes": n, "error": f"not run: needs ~{need:.1f} GiB, {mem_available() / GIB:.1f} free"}
            )
            break
        print(f"N={n}: starting ({load()})", flush=True)
        t0 = time.monotonic()
        row = run_one(n, args, work)
        last = (n, time.monotonic() - t0)
        runs.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("run_tail", "access_log")}), flush=True)
        if row.get("nodes_peak_pss_sum_gib"):
            per_node_gib = row["nodes_peak_pss_sum_gib"] / n
        if "error" in row:
            break
    for row in runs:
        row["command"] = command.strip()
    if args.append and OUT_JSON.exists():
        runs = json.loads(OUT_JSON.read_text())["runs"] + runs  # every attempt kept, a failed one too
        runs.sort(key=lambda r: r["nodes"])
    results = {"command": command.strip(), "machine": info, "work": str(work), "runs": runs}
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(results, indent=1, sort_keys=True))
        write_section(render(results))
    if args.work is None and not any("error" in r for r in runs):
        shutil.rmtree(work, ignore_errors=True)
    print(render(results))
    return results


def _f(value, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def render(results: dict) -> str:
    lines = [
        SECTION,
        "",
        "Command(s), in the repository root (each row says its load; rows of several invocations "
        "when `--append` was used):",
        "",
        *[
            f"    PYTHONPATH=$PWD .venv/bin/{c}"
            for c in dict.fromkeys(r.get("command", results["command"]) for r in results["runs"])
        ],
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in results["machine"].items()],
        "",
        "| N | start to all online s | round wall s (each) | run wall s "
        "| SuperLink CPU s (start / idle % / run) "
        "| SuperLink peak RSS MiB | ServerApp CPU s / peak RSS MiB | node RSS MiB idle / peak (median; max) "
        "| node peak PSS MiB (median) | all nodes PSS GiB | proxy MB per round (nginx r+w) | idle proxy kB/s "
        "| load before -> after | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        if "load_before" not in r:
            lines.append(f"| {r['nodes']} | | | | | | | | | | | | | {r.get('error', '').replace('|', '/')} |")
            continue
        rounds = r.get("rounds", [])
        per_round = [x["proxy_bytes"] / 1e6 for x in rounds[1:]] or [x["proxy_bytes"] / 1e6 for x in rounds]
        node_rss = r["node_tree_peak_rss_mib"]
        status = r.get("error", f"ok, {r.get('sites_trained')} sites trained").replace("|", "/")
        status = status if len(status) <= 200 else status[:200] + " ... (JSON: error)"
        lines.append(
            f"| {r['nodes']} | {_f(r.get('start_all_online_s'))} "
            f"| {', '.join(_f(x['wall_s']) for x in rounds) or '-'} | {_f(r.get('run_wall_s'))} "
            f"| {_f(r.get('superlink_cpu_start_s'))} / {_f(r.get('idle_superlink_cpu_pct'))} / "
            f"{_f(r.get('superlink_cpu_run_s'))} | {_f(r['superlink_peak_rss_mib'], '.0f')} "
            f"| {_f(r['serverapp_cpu_s'])} / {_f(r['serverapp_peak_rss_mib'], '.0f')} "
            f"| {_f(r.get('idle_node_rss_mib', {}).get('median'), '.0f')} / {_f(node_rss['median'], '.0f')}; "
            f"{_f(node_rss['max'], '.0f')} "
            f"| {_f(r['node_tree_peak_pss_mib']['median'], '.0f')} "
            f"| {_f(r['nodes_peak_pss_sum_gib'], '.2f')} "
            f"| {_f(sum(per_round) / len(per_round) if per_round else None, '.2f')} "
            f"| {_f((r.get('idle_proxy_bytes_per_s') or 0) / 1e3)} "
            f"| {_load(r['load_before'])} -> {_load(r['load_after'])} | {status} |"
        )
    lines += ["", "Raw numbers: `benchmarks/results/deployment_scale.json`.", ""]
    return "\n".join(lines)


def _load(uptime: str) -> str:
    return uptime.split("load average:")[-1].strip()


def write_section(section: str) -> None:
    """Replace (or append) the Deployment curve section of scale.md, keeping the others."""
    text = OUT_MD.read_text() if OUT_MD.exists() else "# Scale benchmarks (issue S)\n\n"
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        tail = rest[rest.index("\n## ") :] if "\n## " in rest else ""
        text = head + section.rstrip() + "\n" + tail
    else:
        text = text.rstrip() + "\n\n" + section
    OUT_MD.write_text(text)


if __name__ == "__main__":
    main()
