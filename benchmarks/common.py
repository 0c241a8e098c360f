"""What every benchmark needs: machine facts, side-by-side medians, process-tree memory."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def machine_info() -> dict[str, str]:
    """CPU, cores, memory, load and framework versions, for the results header."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 2**20:.1f} GiB",
        "load (uptime)": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "opacus": version("opacus"),
        "flwr": version("flwr"),
    }


def side_by_side(
    variants: dict[str, Callable[[], dict[str, float]]], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Run every variant once per repeat, interleaved, so load changes hit all of them alike.

    Each variant returns named measures ({"wall": s, "cpu": s}); lists per variant and measure.
    """
    times: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            for measure, value in run().items():
                times[name].setdefault(measure, []).append(value)
    return times


def medians(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {name: {m: median(v) for m, v in measures.items()} for name, measures in times.items()}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(function: Callable[[], object]) -> dict[str, float]:
    """Wall seconds and this process's CPU seconds (robust to other users' load when the
    work is single-threaded)."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_memory(root: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over ``root`` and all its descendants.

    PSS splits shared pages (torch's libraries in every Ray worker) between the processes
    sharing them, so it adds up to real memory use; RSS sums count them once per process.
    """
    tree, todo, rss, pss = _children(), [root], 0, 0
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def run_watched(
    args: list[str], *, cwd: Path, env: dict | None = None, poll_s: float = 1.0, timeout: float = 3600
) -> dict[str, float]:
    """Run a command; wall time and peak process-tree RSS/PSS, sampled every ``poll_s``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0, 0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            rss, pss = tree_memory(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            done.wait(poll_s)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output, _ = proc.communicate(timeout=timeout)
    done.set()
    watcher.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {
        "wall_s": wall,
        "peak_rss_gib": peak[0] / 2**30,
        "peak_pss_gib": peak[1] / 2**30,
        "output": output,
    }


def fresh_run_dir(path: Path) -> Path:
    """A benchmark's scratch run folder, emptied: lhsfed-train refuses a folder holding a run."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def synth_cohort(
    out: Path,
    *,
    sites: int,
    rows: int,
    heterogeneity: float = 0.5,
    seed: int = 0,
    name: str = "bench",
    extra: tuple[str, ...] = (),
) -> Path:
    """Write a synthetic cohort with ``lhsfed synth`` (reused if already there); ``extra``: more
    of its options (e.g. ``--min-site-rows``)."""
    spec = out / "data" / f"{name}.yaml"
    if not spec.is_file():
        subprocess.run(
            [
                str(BIN / "lhsfed"),
                "synth",
                "--sites",
                str(sites),
                "--rows",
                str(rows),
                "--heterogeneity",
                str(heterogeneity),
                "--seed",
                str(seed),
                "--name",
                name,
                "--out",
                str(out),
                *extra,
            ],
            check=True,
            capture_output=True,
        )
    return spec


def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s"


def ratio(a: float, b: float) -> float:
    return float(np.float64(a) / np.float64(b))


def write_results(results: dict, out: Path, name: str, render: Callable[[dict], str]) -> dict:
    """``out/NAME.json`` (every number, sorted keys) and ``out/NAME.md`` (``render``'s table)."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    (out / f"{name}.md").write_text(render(results))
    return results
