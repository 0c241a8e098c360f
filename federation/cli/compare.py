"""``lhsfed compare TASK``: the registered champion vs the challenger on every site.

Writes ``comparison.json`` and ``comparison.html`` into the comparison's folder (default
``comparisons/TASK-<UTC time>`` under the runs root ``LHSFED_RUNS_ROOT``, else under
``outputs/``), logs both and the pooled AUROC difference (and its 95 % CI) to the
challenger version's MLflow run, and prints a short table and the promotion rule's outcome
per part (what ``lhsfed promote`` would find with its default margins). Hydra overrides choose how the
sites are reached (``federation.runtime=inprocess``, ``federation=deployment
superlink=HOST:PORT``, ``federation.data_dir=...``).
"""

from __future__ import annotations

from pathlib import Path


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(document: dict) -> list[str]:
    """The console's lines: one per site, the pooled row (its CI: the pooled difference's,
    DP noise included), each refusal, then the default promotion rule per part and overall."""
    from federation.core.promotion_rule import PromotionRule, judge

    lines = [f"{'site':<14} {'n':>5} {'champion':>9} {'challenger':>10} {'diff':>7}  95% CI (paired)"]
    for site, e in sorted(document["sites"].items()):
        low, high = e["difference_ci"]
        lines.append(
            f"{site:<14} {e['n_test']:>5} {_number(e['champion']['auroc']):>9} "
            f"{_number(e['challenger']['auroc']):>10} {_number(e['auroc_difference']):>7}  "
            + (f"[{_number(low)}, {_number(high)}]" if not e.get("too_noisy") else f"n/a: {e['too_noisy']}")
        )
    pooled = document["pooled"]
    low, high = pooled.get("auroc_difference_ci") or [None, None]
    lines.append(
        f"{'pooled':<14} {'':>5} {_number(pooled['champion_auroc']):>9} "
        f"{_number(pooled['challenger_auroc']):>10} {_number(pooled['auroc_difference']):>7}  "
        f"[{_number(low)}, {_number(high)}] (pooled)"
    )
    lines += [f"refused: {site}: {reason}" for site, reason in sorted(document["refused"].items())]
    rule = PromotionRule()
    lines.append(f"promotion rule (defaults): {rule.text()}")
    lines += judge(document, rule).lines()
    return lines


def run(args) -> int:
    from federation.cli.registry import _quiet_client
    from federation.coordinator.comparison import COMPARISON_JSON, log_to_challenger, run_compare
    from federation.modeler.comparison_page import write_page

    _quiet_client()
    document, out, challenger = run_compare(
        args.task,
        challenger_dir=args.challenger,
        uri=args.registry_uri,
        out_dir=args.out,
        overrides=list(args.overrides),
        threshold=args.threshold,
    )
    page = write_page(document, out)
    logged = log_to_challenger(args.registry_uri, challenger, [out / COMPARISON_JSON, page], document)
    print("\n".join(table(document)))
    where = f"; logged to the challenger's MLflow run {challenger.run_id}" if logged else ""
    print(f"comparison: {out / COMPARISON_JSON}, {page}{where}")
    return 0


def register(subparsers) -> None:
    from federation.coordinator.registry import DEFAULT_URI  # standard library only at import

    parser = subparsers.add_parser("compare", help="champion vs challenger on every site's test rows")
    parser.add_argument("task", help="the registered task, e.g. uci_heart-num")
    parser.add_argument(
        "--challenger",
        type=Path,
        default=None,
        help="a finished run folder whose selected model is the challenger (default: TASK@challenger)",
    )
    parser.add_argument(
        "--registry-uri", default=DEFAULT_URI, help=f"the MLflow registry URI (default {DEFAULT_URI})"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="its folder (default $LHSFED_RUNS_ROOT/comparisons/TASK-<UTC time>, else under outputs/)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="the risk threshold net benefit is compared at (default 0.5, as lhsfed evaluate's)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. federation.runtime=inprocess")
    parser.set_defaults(func=run)
