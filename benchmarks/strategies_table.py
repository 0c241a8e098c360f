"""Pooled test AUROC of every strategy, DP off and at ε=3, as a markdown table.

    .venv/bin/python benchmarks/strategies_table.py --rounds 5 > table.md

Each cell is one federation of the four embedded hospitals with the default config and
``strategy=NAME`` (plus ``privacy=off`` or ``privacy.target_epsilon=3``), run by
``federation.coordinator.inprocess`` (the same ServerApp loop and ClientApp as ``lhsfed-train``,
without Ray), seed 42.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

from federation.coordinator.inprocess import run_config_for, run_in_process
from federation.core.settings import STRATEGY_NAMES

PRIVACY = {"DP off": ["privacy=off"], "ε = 3": ["privacy=dp", "privacy.target_epsilon=3.0"]}


def pooled_auroc(overrides: list[str], run_dir: Path) -> float:
    with contextlib.redirect_stdout(sys.stderr):  # round lines to stderr, the table to stdout
        summary = run_in_process(run_config_for(overrides, run_dir), run_dir=run_dir, num_nodes=4)
    return summary["metrics"]["pooled"]["auroc"]


def table(rounds: int, strategies: list[str]) -> str:
    lines = [
        "| strategy | " + " | ".join(f"AUROC, {p}" for p in PRIVACY) + " |",
        "|---|" + "---:|" * len(PRIVACY),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in strategies:
            cells = [
                pooled_auroc(
                    [f"strategy={strategy}", f"rounds={rounds}", *privacy], Path(tmp) / f"{strategy}-{i}"
                )
                for i, privacy in enumerate(PRIVACY.values())
            ]
            lines.append(f"| {strategy} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
            print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGY_NAMES))
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the table only; rejections would show as warnings
    start = time.time()
    print(table(args.rounds, args.strategies))
    print(f"\n({args.rounds} rounds, seed 42, {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
