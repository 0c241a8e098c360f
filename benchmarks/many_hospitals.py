"""(c) Many simulated hospitals: wall time and peak memory of a whole DP federation.

``lhsfed synth`` writes N hospitals (Parquet), then ``lhsfed-train`` runs R rounds over all of
them with DP on. Memory is the peak over the launcher's whole process tree (Ray included),
sampled every second; run at two site counts with the same rows, it shows whether memory
grows with the number of sites.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import BIN, REPO, fresh_run_dir, run_watched, synth_cohort
from federation.core.run_layout import SUMMARY


def command(data_dir: Path, run_dir: Path, rounds: int, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        str(BIN / "lhsfed-train"),
        "--config-dir",
        str(data_dir),
        "data=bench",
        f"federation.data_dir={data_dir}",
        f"rounds={rounds}",
        "train.batch_size=256",
        "strategy.round_timeout=7200",
        f"hydra.run.dir={run_dir}",
        "federation.fresh_ledgers=true",  # each size a first campaign: no ε from another run
        *extra,
    ]


def run_one(
    work: Path,
    *,
    sites: int,
    rows: int,
    rounds: int,
    extra: tuple[str, ...] = (),
    synth: tuple[str, ...] = (),
) -> dict:
    """One DP federation over a fresh ``sites`` × ``rows`` cohort; ``extra``: more overrides
    (e.g. ``federation.runtime=inprocess``), ``synth``: more ``lhsfed synth`` options."""
    data_dir = work / f"cohort_{sites}x{rows}"
    synth_cohort(data_dir, sites=sites, rows=rows, heterogeneity=0.7, extra=synth)
    run_dir = fresh_run_dir(work / run_name(sites, rows, rounds, extra))
    result = run_watched(command(data_dir, run_dir, rounds, extra), cwd=REPO, timeout=4 * 3600)
    summary = (run_dir / SUMMARY).read_text()
    counts = json.loads(summary)
    return {
        "sites_trained": counts.get("sites_trained"),
        "sites_never_trained": counts.get("sites_never_trained", []),
        "sites": sites,
        "rows": rows,
        "rounds": rounds,
        "wall_s": result["wall_s"],
        "peak_rss_gib": result["peak_rss_gib"],
        "peak_pss_gib": result["peak_pss_gib"],
        "summary": summary,
        "command": " ".join(command(data_dir, Path("RUN"), rounds, extra)),
    }


def run_name(sites: int, rows: int, rounds: int, extra: tuple[str, ...] = ()) -> str:
    """The run folder's name under the work folder (one per size and overrides)."""
    suffix = "".join(f"_{e.split('=')[-1]}" for e in extra)
    return f"run_{sites}x{rows}x{rounds}{suffix}"


def run(
    work: Path, *, sites: int = 100, rows: int = 1_000_000, rounds: int = 5, compare_sites: int | None = 10
) -> list[dict]:
    """The full-size run, and the same rows over fewer sites for the memory comparison."""
    runs = [run_one(work, sites=sites, rows=rows, rounds=rounds)]
    if compare_sites:
        runs.append(run_one(work, sites=compare_sites, rows=rows, rounds=rounds))
    return runs
