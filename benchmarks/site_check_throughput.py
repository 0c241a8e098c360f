"""How fast ``lhsfed site check`` reads a large valid CSV (issue R: >= 20 MB/s of valid rows).

A valid file of ``--size-mb`` MB for the default spec (``configs/data/uci_heart.yaml``, no
header) is written from the embedded UCI rows, repeated: every column keeps the UCI row's
value (missing markers included) except ``chol`` and ``thalach``, which are set from the row
number (two decimals, inside their spec ranges) so every row is distinct (repeated rows beyond
10 % of a file fail the check by design). The real CLI then checks it in a subprocess; the
table gives wall seconds, MB/s and rows/s, and the peak RSS of the process (sampled every
0.2 s). Writes ``benchmarks/results/site_check_throughput.md`` (``--label`` names the row; a
row of another label already there is kept, so a before/after pair sits side by side).

    python -m benchmarks.site_check_throughput [--size-mb 1024] [--label after] [--keep FILE]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from benchmarks.common import BIN, REPO, machine_info, run_watched

RESULTS = REPO / "benchmarks" / "results" / "site_check_throughput.md"
UCI = REPO / "federation" / "core" / "datasets" / "uci_heart"
CHOL, THALACH = 4, 7  # column positions (configs/data/uci_heart.yaml's columns)
CHOL_VALUES = 50_000  # chol = 100.00 + 0.01 * (row % 50 000): 100..599.99 mg/dl
THALACH_VALUES = 16_000  # thalach = 60.00 + 0.01 * (row // 50 000): 60..219.99 bpm
ROWS_AT_ONCE = 200_000


def _base_rows() -> list[tuple[str, str, str]]:
    """(text before chol, between chol and thalach, after thalach) of every embedded UCI row."""
    parts = []
    for path in sorted(UCI.glob("processed.*.data")):
        for line in path.read_text().splitlines():
            if line.strip():
                cells = line.split(",")
                parts.append(
                    (
                        ",".join(cells[:CHOL]) + ",",
                        "," + ",".join(cells[CHOL + 1 : THALACH]) + ",",
                        "," + ",".join(cells[THALACH + 1 :]) + "\n",
                    )
                )
    return parts


def write_csv(path: Path, size_mb: float) -> int:
    """A valid headerless CSV of at least ``size_mb`` MB (10^6 bytes); returns its row count."""
    base = _base_rows()
    chol = [f"{100 + i / 100:.2f}" for i in range(CHOL_VALUES)]
    thalach = [f"{60 + i / 100:.2f}" for i in range(THALACH_VALUES)]
    target, written, row = size_mb * 1e6, 0, 0
    with open(path, "w") as out:
        while written < target:
            if row // CHOL_VALUES >= THALACH_VALUES:
                raise ValueError("file too large for distinct rows")
            text = "".join(
                f"{a}{chol[i % CHOL_VALUES]}{b}{thalach[i // CHOL_VALUES]}{c}"
                for i in range(row, row + ROWS_AT_ONCE)
                for a, b, c in (base[i % len(base)],)
            )
            if written + len(text) > target:  # stop at the first line end past the size
                text = text[: text.index("\n", int(target - written)) + 1]
            out.write(text)
            written += len(text)
            row += text.count("\n")
    return row


def check(path: Path) -> dict[str, float]:
    """Wall seconds and peak RSS of ``lhsfed site check --data PATH`` (it must PASS)."""
    result = run_watched([str(BIN / "lhsfed"), "site", "check", "--data", str(path)], cwd=REPO, poll_s=0.2)
    verdict = result["output"].strip().splitlines()[-1]
    if not verdict.startswith("PASS"):
        raise RuntimeError(f"the check did not pass: {verdict}")
    return result


def _rows_kept(label: str) -> list[str]:
    """Table rows of other labels already in the results file."""
    if not RESULTS.is_file():
        return []
    return [
        line
        for line in RESULTS.read_text().splitlines()
        if line.startswith("| ") and not line.startswith(("| label", f"| {label} |"))
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024, help="file size in MB (10^6 bytes)")
    parser.add_argument("--label", default="after", help="the results row's name (before / after)")
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the CSV here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        path = args.keep or Path(scratch) / "site.csv"
        if path.is_file() and path.stat().st_size >= args.size_mb * 1e6:
            rows = sum(1 for _ in open(path, "rb"))
        else:
            rows = write_csv(path, args.size_mb)
        size = path.stat().st_size
        result = check(path)
    seconds = result["wall_s"]
    row = (
        f"| {args.label} | {size / 1e6:.0f} | {rows:,} | {seconds:.1f} | {size / 1e6 / seconds:.1f} "
        f"| {rows / seconds:,.0f} | {result['peak_rss_gib'] * 1024:.0f} |"
    )
    machine = machine_info()
    lines = [
        "# `lhsfed site check` throughput",
        "",
        f"Command: `nice -n 10 python -m benchmarks.site_check_throughput --size-mb {args.size_mb:g} "
        "--label LABEL`: a valid headerless CSV for `configs/data/uci_heart.yaml` (the embedded UCI",
        "rows repeated, `chol` and `thalach` set from the row number so every row is distinct), then",
        "`lhsfed site check --data FILE` in a subprocess; wall time includes start-up and the report.",
        "Goal (issue R): >= 20 MB/s of valid rows on a 2-core machine. MB = 10^6 bytes.",
        "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        "",
        "| label | file (MB) | rows | wall (s) | MB/s | rows/s | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
        *_rows_kept(args.label),
        row,
    ]
    notes = re.split(r"\n(?=## )", RESULTS.read_text(), maxsplit=1)[1:] if RESULTS.is_file() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n" + "".join("\n" + n for n in notes))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
