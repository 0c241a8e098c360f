"""``make bench``: run (a)-(d) and write ``benchmarks/RESULTS.md``.

``python -m benchmarks.run [--quick] [--only a,b,c,d] [--sites 100 --rows 1000000 --rounds 5]``
--quick shrinks every size for a smoke run; the defaults are the issue's sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks import dp_epoch, federated_vs_central, many_hospitals, wire_bytes
from benchmarks.common import machine_info
from benchmarks.report import render

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default="a,b,c,d", help="which benchmarks (default a,b,c,d)")
    parser.add_argument("--sites", type=int, default=100, help="(c) hospitals")
    parser.add_argument("--rows", type=int, default=1_000_000, help="(c) total rows")
    parser.add_argument("--rounds", type=int, default=5, help="(c) rounds")
    parser.add_argument("--repeats", type=int, default=5, help="(a) repeats")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None, help="folder for cohorts and runs")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="lhsfed-bench-"))
    results: dict = {"machine": machine_info(), "quick": args.quick}
    if "a" in only:
        results["a"] = dp_epoch.run(rows=5_000 if args.quick else 50_000, repeats=args.repeats)
    if "b" in only:
        results["b"] = federated_vs_central.run(work, rows=20_000 if args.quick else 200_000,
                                                repeats=1 if args.quick else 3)
    if "c" in only:
        sites, rows = (10, 20_000) if args.quick else (args.sites, args.rows)
        results["c"] = many_hospitals.run(work, sites=sites, rows=rows, rounds=args.rounds,
                                          compare_sites=max(2, sites // 10))
    if "d" in only:
        results["d"] = wire_bytes.run()
    results["machine"]["load after (uptime)"] = machine_info()["load (uptime)"]
    results["commands"] = {key: " ".join(argv if argv is not None else sys.argv[1:])
                           for key in only}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged = _merge_previous(args.out.with_suffix(".json"), results)
    args.out.with_suffix(".json").write_text(json.dumps(merged, indent=1, default=str))
    args.out.write_text(render(merged))
    print(f"wrote {args.out}")


def _merge_previous(path: Path, results: dict) -> dict:
    """Keep sections of an earlier run that this run did not redo (``--only c`` refreshes c)."""
    previous = json.loads(path.read_text()) if path.is_file() else {}
    machines = {**previous.get("machines", {}), **{k: results["machine"] for k in "abcd" if k in results}}
    commands = {**previous.get("commands", {}), **results["commands"]}
    merged = {**previous, **{k: v for k, v in results.items() if k in "abcd"}}
    merged.update(machines=machines, commands=commands, quick=results["quick"])
    return merged


if __name__ == "__main__":
    main()
