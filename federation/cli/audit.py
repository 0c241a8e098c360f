"""``lhsfed audit RUN_DIR``: membership-inference audit of a run's global model -> audit.json."""

from __future__ import annotations

from pathlib import Path

from federation.cli.arguments import at_least


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from federation.core.input_files import refuse_file_as_folder
    from federation.modeler.audit.runner import AUDIT, audit_run

    refuse_file_as_folder(args.data_dir, option="--data-dir")
    report = audit_run(Path(args.run_dir), shadows=args.shadows, seed=args.seed, data_dir=args.data_dir)
    table = Table(title=f"membership inference on {args.run_dir} (AUC 0.5 = no leak)")
    for column in ("attack", "site", "AUC", "AUC 95% interval", "TPR @ 1% FPR", "members / non-members"):
        table.add_column(column)
    for attack, sites in report["attacks"].items():
        for site, m in sites.items():
            low, high = m["auc_ci95"]
            table.add_row(
                attack,
                site,
                f"{m['auc']:.3f}",
                f"{low:.3f} – {high:.3f}",
                f"{m['tpr_at_1pct_fpr']:.3f}",
                f"{m['members']} / {m['non_members']}",
            )
    Console().print(table)
    print(f"written: {Path(args.run_dir) / AUDIT}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit", help="membership-inference audit of a run's global model (simulation data)"
    )
    parser.add_argument("run_dir", help="run folder written by lhsfed-train")
    parser.add_argument(
        "--shadows", type=at_least(1), default=8, help="shadow models for LiRA, at least 1 (default 8)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shadows' data splits")
    parser.add_argument(
        "--data-dir", default=None, help="folder of the sites' files (default: the run's, else embedded)"
    )
    parser.set_defaults(func=run)
