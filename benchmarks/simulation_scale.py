"""Issue S.4: the simulation's cost curve to 1,000 hospitals, rows per site fixed.

Every hospital holds exactly ``--rows-per-site`` rows (``lhsfed synth --min-site-rows =
--max-site-rows``), so every site calibrates the same DP noise: a simulation computes it once
per process, where hospitals of different sizes each compute their own (about 1 s each on this
machine, Brent's search in ``federation.core.privacy``) — the figure to add for such a network.

For each site count (default 10, 100, 1,000; 1,000 rows per site; 5 DP rounds at ε = 3):

* ``lhsfed-train`` wall time and peak memory of its whole process tree (Ray included);
* the run folder's size;
* ``lhsfed evaluate`` (scores every site's test rows, writes evaluation.json and both
  reports; beyond 20 sites the report shows the extreme sites, ``federation.modeler.site_view``):
  wall time and peak memory;
* headless Chromium's render of report.html to a full-page screenshot: wall time, and at the
  largest size the screenshot itself (``benchmarks/results/report_1000_sites.png``).

    python -m benchmarks.simulation_scale [--sites 10 100 1000] [--rows-per-site 1000]

Writes ``benchmarks/results/scale_simulation.{json,md}`` with the command, the machine and
its load average before and after every size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BIN, REPO, machine_info, run_watched
from benchmarks.many_hospitals import run_name, run_one
from benchmarks.report_screenshot import screenshot

RESULTS = REPO / "benchmarks" / "results"


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def one_size(
    work: Path, sites: int, rows_per_site: int, rounds: int, runtime: str, shot: Path | None
) -> dict:
    load_before = os.getloadavg()
    extra = (f"federation.runtime={runtime}",)
    fixed = (f"--min-site-rows={rows_per_site}", f"--max-site-rows={rows_per_site}")
    trained = run_one(work, sites=sites, rows=sites * rows_per_site, rounds=rounds, extra=extra, synth=fixed)
    run_dir = work / run_name(sites, sites * rows_per_site, rounds, extra)
    evaluated = run_watched([str(BIN / "lhsfed"), "evaluate", str(run_dir)], cwd=REPO, timeout=3600)
    start = time.perf_counter()
    target = shot or work / f"report_{sites}.png"
    rendered = screenshot(run_dir / "report.html", target, work / f"profile_{sites}", height=9000)
    render_s = time.perf_counter() - start
    rendered.check_returncode()
    summary = json.loads(trained.pop("summary"))
    return {
        "sites": sites,
        "runtime": runtime,
        "rows_per_site": rows_per_site,
        "rounds": rounds,
        "sites_trained": summary.get("sites_trained"),
        "train_wall_s": round(trained["wall_s"], 1),
        "train_peak_rss_gib": round(trained["peak_rss_gib"], 2),
        "train_peak_pss_gib": round(trained["peak_pss_gib"], 2),
        "run_folder_mib": round(folder_mib(run_dir), 1),
        "evaluate_wall_s": round(evaluated["wall_s"], 1),
        "evaluate_peak_rss_gib": round(evaluated["peak_rss_gib"], 2),
        "report_html_mib": round((run_dir / "report.html").stat().st_size / 2**20, 2),
        "render_s": round(render_s, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "command": trained["command"],
    }


def markdown(results: list[dict], argv: list[str]) -> str:
    info = machine_info()
    lines = [
        "# Simulation cost curve (issue S.4)",
        "",
        f"Command: `python -m benchmarks.simulation_scale {' '.join(argv)}`; machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items())
        + ".",
        "Each size: a `lhsfed synth` cohort (heterogeneity 0.7, every hospital the same rows), then",
        "`lhsfed-train` with DP on (ε = 3, the default recipe) in the runtime the row names",
        "(`inprocess`: one process, sites in turn; `ray`: Flower's simulation runtime), then",
        "`lhsfed evaluate` and headless Chromium rendering report.html (9000 px page).",
        "Load: 1/5/15-minute averages before → after.",
        "",
        "| sites | runtime | rows/site | rounds | trained | train wall s | train peak RSS GiB "
        "| run folder MiB | evaluate s | evaluate peak GiB | report.html MiB | render s "
        "| load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['sites']} | {r['runtime']} | {r['rows_per_site']} | {r['rounds']} | "
            f"{r['sites_trained']} | "
            f"{r['train_wall_s']} | {r['train_peak_rss_gib']} | {r['run_folder_mib']} | "
            f"{r['evaluate_wall_s']} | {r['evaluate_peak_rss_gib']} | {r['report_html_mib']} | "
            f"{r['render_s']} | {r['load_before']} → {r['load_after']} |"
        )
    lines += ["", "Training command per size (RUN: the run folder):", ""]
    lines += [f"- {r['sites']} sites, {r['runtime']}: `{r['command']}`" for r in results]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rows-per-site", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--runtimes",
        nargs="+",
        default=["inprocess", "ray"],
        help="federation.runtime values: inprocess (no Ray) and/or ray (Flower's simulation runtime)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "scale_simulation")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for sites in args.sites:
            for runtime in args.runtimes:
                last = sites == max(args.sites) and runtime == args.runtimes[0]
                shot = args.out.parent / f"report_{sites}_sites.png" if last else None
                results.append(one_size(Path(tmp), sites, args.rows_per_site, args.rounds, runtime, shot))
                print(json.dumps(results[-1]), flush=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results, sys.argv[1:]))
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
