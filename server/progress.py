"""The coordinator's console: one rich line per round, then one line per thing that went wrong
(and, after the run, one per site that sat out every round).

The round line: round, mean train loss, pooled validation loss (what chooses the round and
stops the run), pooled test AUROC (reported only), the largest ε of this run and of the
sites' lifetimes (their ledgers), sites trained. Then one line for a discarded round (the
global model kept, ε still charged at the sites that trained: they reserve it before
training) and one per failure or refusal, naming the site and its reason.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

_console = Console(highlight=False)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _loss(record: dict[str, Any]) -> str:
    """Mean train loss; under DP sites send none (it is exact about the sampled rows), so the
    pooled test loss the sites released is shown instead."""
    losses = [t["loss"] for t in record["train"].values() if t.get("loss") is not None]
    if losses:
        return f"train loss {sum(losses) / len(losses):.4f}"
    test = record["evaluate"].get("pooled", {}).get("loss")
    if test is None:  # under DP the test split is released once, after the run
        return "train loss n/a (DP)"
    return f"test loss {_fmt(test, '.4f')}"


def _epsilon(record: dict[str, Any]) -> str:
    """``max ε 3.00 (site total 4.12)``: this run's and the lifetime (ledger) largest ε;
    no site trained: ``ε n/a``; DP off: ``ε ∞ (no DP)``."""
    train = list(record["train"].values())
    epsilons = [t.get("epsilon") for t in train]
    if not train:
        return "ε n/a (no site trained)"
    if None in epsilons:
        return "ε ∞ (no DP)"
    totals = [t["site_epsilon"] for t in train if t.get("site_epsilon") is not None]
    return f"max ε {max(epsilons):.2f}" + (f" (site total {max(totals):.2f})" if totals else "")


def test_line(record: dict[str, Any]) -> str:
    """Under DP, after the run: the one release of the test split, for the round handed out."""
    pooled = record["evaluate"].get("pooled", {})
    interval = pooled.get("auroc_ci")
    return (
        f"test of round {record['round']} (handed out): pooled AUROC {_fmt(pooled.get('auroc'), '.3f')}"
        + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
        + f"  test loss {_fmt(pooled.get('loss'), '.4f')}  sites {len(record['evaluate'].get('sites', {}))}"
        "  (noisy DP releases; the interval includes their noise)"
    )


def summary_line(summary: dict[str, Any]) -> str:
    """The run's last line, from summary.json itself (one source of truth, issue T acceptance
    2): the round handed out, its pooled test AUROC and each site's ε spent in the whole run.

    The round lines' ``max ε`` is the ledger after training only: under DP each round's
    validation release and the test release come after it, so the last round line showed
    2.73 where the sites had spent 3.00 (summary.json, metrics.jsonl, MLflow, the report)."""
    selection = summary.get("selection") or {}
    pooled = (summary.get("metrics") or {}).get("pooled") or {}
    privacy = summary.get("privacy") or {}
    interval = pooled.get("auroc_ci")
    if privacy.get("enabled"):
        spent = ", ".join(
            f"{site} {_fmt(entry.get('epsilon'), '.3f')}" for site, entry in sorted(privacy["sites"].items())
        )
    else:
        spent = "∞ (no DP)"
    return (
        f"handed out: round {selection.get('round', 'n/a')} of {summary.get('rounds')}; "
        f"pooled test AUROC {_fmt(pooled.get('auroc'), '.3f')}"
        + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
        + f"; ε this run: {spent}"
    )


def show_lines(lines: list[str]) -> None:
    """Warnings of the run as a whole (server.unaggregated, server.ledger_word), in yellow."""
    for line in lines:
        _console.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)


def show_summary(summary: dict[str, Any]) -> None:
    _console.print(summary_line(summary), soft_wrap=True)


def show_test(record: dict[str, Any]) -> None:
    _console.print(test_line(record), soft_wrap=True)


def glm_line(record: dict[str, Any], glm: dict[str, Any]) -> str:
    """model=glm, after its Newton rounds: the λ chosen and the exact evaluation of its model."""
    validation = (record.get("validation") or {}).get("pooled", {})
    pooled = record["evaluate"].get("pooled", {})
    return (
        f"glm: λ={glm['selected_lambda']:g} (sklearn C={glm['selected_C']:g}) by {glm['selected_by']}, "
        f"{'converged' if glm['converged'] else 'NOT converged'} in {glm['rounds']} rounds; "
        f"val loss {_fmt(validation.get('loss'), '.4f')}  pooled AUROC {_fmt(pooled.get('auroc'), '.3f')}  "
        f"test loss {_fmt(pooled.get('loss'), '.4f')}  sites {len(record['evaluate'].get('sites', {}))}"
    )


def show_glm(record: dict[str, Any], glm: dict[str, Any]) -> None:
    _console.print(glm_line(record, glm), soft_wrap=True)


def round_line(record: dict[str, Any], total_rounds: int) -> str:
    pooled = record["evaluate"].get("pooled", {})
    validation = (record.get("validation") or {}).get("pooled", {})
    return (
        f"round {record['round']:>3}/{total_rounds}  {_loss(record)}  "
        f"val loss {_fmt(validation.get('loss'), '.4f')}"
        + (f" ±{validation['loss_se']:.2f}" if validation.get("loss_se") is not None else "")
        + "  "
        + (
            f"pooled AUROC {_fmt(pooled.get('auroc'), '.3f')}  "
            if pooled or not validation
            else f"val AUROC {_fmt(validation.get('auroc'), '.3f')}  "
        )
        + f"{_epsilon(record)}  "
        f"sites {len(record['train'])}"
        + ("  [yellow]discarded[/yellow]" if record.get("discarded") else "")
        + (f"  [red]failures {len(record['failures'])}[/red]" if record.get("failures") else "")
    )


def _who(failure: dict[str, Any]) -> str:
    site = failure.get("site")
    node = failure["node"]
    return f"site {site} (node {node})" if site else f"node {node} (site unknown)"


def event_lines(record: dict[str, Any]) -> list[str]:
    """A discarded round, then each failure: one line each, reasons as the sites sent them."""
    lines, prefix = [], f"  round {record['round']}"
    if record.get("discarded"):
        charged = sorted(s for s, t in record["train"].items() if t.get("epsilon") is not None)
        lines.append(
            f"[yellow]{prefix} discarded: {escape(str(record.get('discard_reason')))}"
            + (
                f"; ε still charged at {len(charged)} site(s) that trained ({', '.join(charged)})"
                if charged
                else ""
            )
            + "[/yellow]"
        )
    for failure in record.get("failures", []):
        reason = " ".join(str(failure["reason"]).split())[:500]
        lines.append(
            f"[red]{prefix} {failure.get('stage', 'train')}: {escape(_who(failure))}: {escape(reason)}[/red]"
        )
    return lines


def show_round(record: dict[str, Any], total_rounds: int) -> None:
    for line in [round_line(record, total_rounds), *event_lines(record)]:
        _console.print(line, soft_wrap=True)


def stop_line(selection: dict[str, Any], total_rounds: int) -> str:
    better = "clearly better (beyond its noise)" if selection.get("improvement") == "clear" else "better"
    return (
        f"[cyan]stopped early: no {better} pooled validation {selection['metric']} for "
        f"{selection['patience']} round(s); round {selection['round']} of {total_rounds} "
        "planned is the model handed out[/cyan]"
    )


def show_stop(selection: dict[str, Any], total_rounds: int) -> None:
    _console.print(stop_line(selection, total_rounds), soft_wrap=True)


def sat_out(records: list[dict[str, Any]]) -> dict[str, str]:
    """Site (or node, if it never named itself) -> its first reason, for each one that failed
    the train stage of every round of the run."""
    failed = [
        {
            _named(failure): str(failure["reason"])
            for failure in record.get("failures", [])
            if failure.get("stage", "train") == "train"
        }
        for record in records
    ]
    if not failed:
        return {}
    every = set(failed[0]).intersection(*failed[1:])
    return {who: failed[0][who] for who in sorted(every)}


def show_sat_out(failed: dict[str, str]) -> None:
    for who, reason in failed.items():
        _console.print(
            f"[yellow]{escape(who)} sat out every round: {escape(' '.join(reason.split())[:500])}[/yellow]",
            soft_wrap=True,
        )


def absent_line(summary: dict[str, Any]) -> str | None:
    """``3 of 4 sites trained; never trained: va`` from summary.json (None: every site trained)."""
    absent = summary.get("sites_never_trained") or []
    if not absent:
        return None
    return (
        f"{summary['sites_trained']} of {summary['sites']} sites trained; never trained: {', '.join(absent)}"
    )


def show_absent(line: str) -> None:
    _console.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)


def budget_left_out(records: list[dict[str, Any]], budget_code: int) -> dict[str, str] | None:
    """Site -> reason, if the last round had no site train and every site refused with
    ``budget_code`` (a resumed run with no useful budget left); else None."""
    if not records or records[-1]["train"]:
        return None
    refusals = [f for f in records[-1].get("failures", []) if f.get("stage", "train") == "train"]
    if not refusals or any(f.get("code") != budget_code for f in refusals):
        return None
    return {_named(f): str(f["reason"]) for f in refusals}


def _named(failure: dict[str, Any]) -> str:
    """``site va``, or ``node 9`` for a node that never named its site (stable in a run)."""
    return f"site {failure['site']}" if failure.get("site") else f"node {failure['node']}"
