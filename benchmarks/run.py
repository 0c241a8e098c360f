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
    parser.add_argument("--b-repeats", type=int, default=3, help="(b) repeats")
    parser.add_argument(
        "--compare-sites",
        type=int,
        default=10,
        help="(c) also run the same rows over this many sites (0: skip)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None, help="folder for cohorts and runs")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="lhsfed-bench-"))
    results: dict = {"machine": machine_info(), "quick": args.quick}
    sections = {
        "a": lambda: dp_epoch.run(rows=5_000 if args.quick else 50_000, repeats=args.repeats),
        "b": lambda: federated_vs_central.run(
            work, rows=20_000 if args.quick else 200_000, repeats=1 if args.quick else args.b_repeats
        ),
        "c": lambda: many_hospitals.run(
            work,
            sites=10 if args.quick else args.sites,
            rows=20_000 if args.quick else args.rows,
            rounds=args.rounds,
            compare_sites=2 if args.quick else args.compare_sites,
        ),
        "d": wire_bytes.run,
    }
    for key in sorted(only):
        results[key] = sections[key]()
        _write(args.out, results, key, argv)  # after each section: a long run keeps what it has
    print(f"wrote {args.out}")


def _write(out: Path, results: dict, key: str, argv: list[str] | None) -> None:
    section = {
        key: results[key],
        "quick": results["quick"],
        "machine": {**results["machine"], "load after (uptime)": machine_info()["load (uptime)"]},
        "commands": {key: " ".join(argv if argv is not None else sys.argv[1:])},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    merged = _merge_previous(out.with_suffix(".json"), section)
    out.with_suffix(".json").write_text(json.dumps(merged, indent=1, default=str))
    out.write_text(render(merged))


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
