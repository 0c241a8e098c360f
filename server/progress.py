"""One rich line per round for the coordinator: round, mean train loss, pooled AUROC, max ε."""

from __future__ import annotations

from typing import Any

from rich.console import Console

_console = Console(highlight=False)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def round_line(record: dict[str, Any], total_rounds: int) -> str:
    train = record["train"].values()
    losses = [t["loss"] for t in train if t.get("loss") is not None]
    epsilons = [t.get("epsilon") for t in train]
    pooled = record["evaluate"].get("pooled", {})
    return (
        f"round {record['round']:>3}/{total_rounds}  "
        f"train loss {_fmt(sum(losses) / len(losses) if losses else None, '.4f')}  "
        f"pooled AUROC {_fmt(pooled.get('auroc'), '.3f')}  "
        + (f"max ε {max(epsilons):.2f}  " if epsilons and None not in epsilons else "ε ∞ (no DP)  ")
        + f"sites {len(record['train'])}"
        + (f"  [red]failures {len(record['failures'])}[/red]" if record.get("failures") else "")
    )


def show_round(record: dict[str, Any], total_rounds: int) -> None:
    _console.print(round_line(record, total_rounds))
