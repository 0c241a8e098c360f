"""``lhsfed promote TASK VERSION --reason TEXT``: make a version the champion, by the rule.

The rule is over several measures, each part passing or failing on its own (default: pooled
AUROC not lower; pooled ECE not higher by more than 0.02; pooled net benefit at the
comparison's threshold not lower by more than 0.01; no site's difference CI entirely beyond
its margin on any of them; sites too small to tell are named). It is applied to the
version's comparison with today's champion (``lhsfed compare``: the one logged on its MLflow
run, or ``--comparison FILE``). A failing rule changes nothing, unless ``--override``; either
way the reason is required and who/when/why/the outcome of each part become tags of the
version (federation.coordinator.promotion).
"""

from __future__ import annotations

from pathlib import Path


def run(args) -> int:
    from federation.cli.registry import _quiet_client
    from federation.coordinator.promotion import PromotionRule, promote

    _quiet_client()
    rule = PromotionRule(
        min_pooled_difference=args.min_pooled_difference,
        site_ci_floor=args.site_ci_floor,
        ece_margin=args.ece_margin,
        net_benefit_margin=args.net_benefit_margin,
    )
    done = promote(
        args.uri,
        args.task,
        args.version,
        reason=args.reason,
        rule=rule,
        comparison_path=args.comparison,
        override=args.override,
    )
    print(done.line())
    if done.reuse_line():
        print(done.reuse_line())
    print(f"rule: {rule.text()}")
    print("\n".join(done.verdict.lines()))
    return 0


def register(subparsers) -> None:
    from federation.coordinator.registry import DEFAULT_URI  # standard library only at import

    parser = subparsers.add_parser("promote", help="make a registered version the champion (by the rule)")
    parser.add_argument("task", help="the task, e.g. uci_heart-num")
    parser.add_argument("version", help="the version to promote (lhsfed registry show TASK)")
    parser.add_argument("--reason", required=True, help="why (stored on the version)")
    parser.add_argument(
        "--comparison",
        type=Path,
        default=None,
        help="comparison.json of lhsfed compare (default: the one logged on the version's run)",
    )
    parser.add_argument("--override", action="store_true", help="promote even if the rule fails")
    parser.add_argument("--min-pooled-difference", type=float, default=0.0, help="default 0")
    parser.add_argument(
        "--site-ci-floor", type=float, default=-0.02, help="a site's AUROC margin (default -0.02)"
    )
    parser.add_argument(
        "--ece-margin", type=float, default=0.02, help="largest ECE rise allowed, pooled and per site (0.02)"
    )
    parser.add_argument(
        "--net-benefit-margin",
        type=float,
        default=0.01,
        help="largest net-benefit drop at the threshold allowed, pooled and per site (0.01)",
    )
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"the MLflow registry URI (default {DEFAULT_URI})")
    parser.set_defaults(func=run)
