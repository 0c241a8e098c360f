"""How long ``lhsfed --help`` takes, beside the bare interpreter and one heavy import.

Issue L asks for ``lhsfed --help`` <= 0.5 s (median of 5). Each command is run in a fresh
process, interleaved with the others (``side_by_side``) so a load change hits all alike; the
table gives medians and the ratio to a bare ``python -c pass``. Writes
``benchmarks/results/cli_startup.md``.

    python -m benchmarks.cli_startup [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import BIN, REPO, machine_info, medians, side_by_side

RESULTS = REPO / "benchmarks" / "results" / "cli_startup.md"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "lhsfed --help": [str(BIN / "lhsfed"), "--help"],
    "lhsfed evaluate --help": [str(BIN / "lhsfed"), "evaluate", "--help"],
    "lhsfed site check --help": [str(BIN / "lhsfed"), "site", "check", "--help"],
    "python -c 'import torch' (what a heavy import costs)": [sys.executable, "-c", "import torch"],
}


def _wall(command: list[str]):
    def run() -> dict[str, float]:
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        return {"wall": time.perf_counter() - start}

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    machine = machine_info()
    times = side_by_side({name: _wall(cmd) for name, cmd in COMMANDS.items()}, args.repeats)
    wall = {name: m["wall"] for name, m in medians(times).items()}
    base = wall["python -c pass"]
    lines = [
        "# `lhsfed --help` start-up",
        "",
        f"Command: `python -m benchmarks.cli_startup --repeats {args.repeats}`; each row a fresh process,",
        "rows interleaved; median wall seconds; goal: `lhsfed --help` <= 0.5 s.",
        "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        "",
        "| command | median wall (s) | runs (s) | ratio to `python -c pass` |",
        "|---|---|---|---|",
    ]
    for name in COMMANDS:
        runs = " ".join(f"{t:.2f}" for t in times[name]["wall"])
        lines.append(f"| `{name}` | {wall[name]:.3f} | {runs} | {wall[name] / base:.1f} |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
