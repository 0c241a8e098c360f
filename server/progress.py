"""One rich line per round for the coordinator: round, mean train loss, pooled AUROC, max ε."""

from __future__ import annotations

from typing import Any

from rich.console import Console

_console = Console(highlight=False)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _loss(record: dict[str, Any]) -> str:
    """Mean train loss; under DP sites send none (it is exact about the sampled rows), so the
    pooled test loss the sites released is shown instead."""
    losses = [t["loss"] for t in record["train"].values() if t.get("loss") is not None]
    if losses:
        return f"train loss {sum(losses) / len(losses):.4f}"
    return f"test loss {_fmt(record['evaluate'].get('pooled', {}).get('loss'), '.4f')}"


def round_line(record: dict[str, Any], total_rounds: int) -> str:
    train = record["train"].values()
    epsilons = [t.get("epsilon") for t in train]
    pooled = record["evaluate"].get("pooled", {})
    return (
        f"round {record['round']:>3}/{total_rounds}  {_loss(record)}  "
        f"pooled AUROC {_fmt(pooled.get('auroc'), '.3f')}  "
        + (f"max ε {max(epsilons):.2f}  " if epsilons and None not in epsilons else "ε ∞ (no DP)  ")
        + f"sites {len(record['train'])}"
        + (f"  [red]failures {len(record['failures'])}[/red]" if record.get("failures") else "")
    )


def show_round(record: dict[str, Any], total_rounds: int) -> None:
    _console.print(round_line(record, total_rounds))
