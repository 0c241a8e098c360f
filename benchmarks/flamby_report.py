"""The FLamby benchmark's outputs: summary CSV, per-seed CSV, DP steps CSV, markdown, bar chart.

Pure of training: takes ``RunResult`` rows (``benchmarks.flamby_protocol``) and writes files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from benchmarks.flamby_protocol import FLAMBY_PUBLISHED, METHODS, RunResult

STEM = "flamby_heart"
GOAL_FEDERATED, GOAL_DP = FLAMBY_PUBLISHED["pooled"], 0.70


def run_frame(results) -> pd.DataFrame:
    """One row per method × setting × seed."""
    return pd.DataFrame(
        [
            {
                "method": r.method,
                "setting": r.setting,
                "seed": r.seed,
                "mean_centre_accuracy": r.mean_centre_accuracy,
                "pooled_accuracy": r.pooled_accuracy,
                "pooled_auroc": r.pooled_auroc,
                "epsilon_max": max((row[4] for row in r.dp_steps), default=float("nan")),
            }
            for r in results
        ]
    )


def dp_frame(results) -> pd.DataFrame:
    """One row per DP run and site: the steps its ledger recorded and the ε they compose to."""
    return pd.DataFrame(
        [
            {
                "method": r.method,
                "setting": r.setting,
                "seed": r.seed,
                "site": site,
                "noise_multiplier": sigma,
                "sample_rate": rate,
                "steps": steps,
                "epsilon": epsilon,
            }
            for r in results
            for site, sigma, rate, steps, epsilon in r.dp_steps
        ],
        columns=["method", "setting", "seed", "site", "noise_multiplier", "sample_rate", "steps", "epsilon"],
    )


def summary_frame(runs: pd.DataFrame, published: dict[str, float]) -> pd.DataFrame:
    """One row per method: FLamby's figure, ours (both settings) mean ± sd over seeds, AUROC, ε."""
    rows = []
    for method in dict.fromkeys(runs["method"]):
        row = {"method": method, "flamby_published": published.get(method)}
        for setting, part in runs[runs["method"] == method].groupby("setting", sort=False):
            acc = part["mean_centre_accuracy"]
            row |= {
                f"{setting}_mean": acc.mean(),
                f"{setting}_sd": acc.std(ddof=1),
                f"{setting}_pooled_accuracy": part["pooled_accuracy"].mean(),
                f"{setting}_pooled_auroc": part["pooled_auroc"].mean(),
                f"{setting}_epsilon_max": part["epsilon_max"].max(),
                f"{setting}_seeds": len(part),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(row, setting: str) -> str:
    if f"{setting}_mean" not in row or pd.isna(row[f"{setting}_mean"]):
        return "–"
    sd = row[f"{setting}_sd"]
    return f"{row[f'{setting}_mean']:.4f} ± {0.0 if pd.isna(sd) else sd:.4f}"


def _eps(row) -> str:
    values = [row.get(f"{s}_epsilon_max") for s in ("flamby", "tuned")]
    shown = [f"{v:.3f}" for v in values if v is not None and not pd.isna(v)]
    return " / ".join(shown) if shown else "–"


def markdown(summary: pd.DataFrame, *, seconds: float, seeds: list[int]) -> str:
    lines = [
        "# FLamby Fed-Heart-Disease, side by side",
        "",
        (
            "Mean over the four centres of the test accuracy at threshold 0.5; mean ± sd over seeds "
            f"{', '.join(map(str, seeds))}. Produced by `make bench-flamby`; the runs took "
            f"{seconds:.0f} s of wall time (summed over the processes that ran them)."
        ),
        "",
        (
            "| method | FLamby published | ours, FLamby's hyperparameters | ours, tuned defaults "
            "| pooled-test AUROC (FLamby hp / tuned) | ε spent, max over sites (FLamby hp / tuned) |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for _, row in summary.iterrows():
        published = "–" if pd.isna(row["flamby_published"]) else f"{row['flamby_published']:.4f}"
        auroc = " / ".join(
            f"{row[f'{s}_pooled_auroc']:.3f}"
            for s in ("flamby", "tuned")
            if f"{s}_pooled_auroc" in row and not pd.isna(row[f"{s}_pooled_auroc"])
        )
        lines.append(
            f"| {row['method']} | {published} | {_cell(row, 'flamby')} | "
            f"{_cell(row, 'tuned')} | {auroc} | {_eps(row)} |"
        )
    lines += ["", goals(summary)]
    return "\n".join(lines) + "\n"


def goals(summary: pd.DataFrame) -> str:
    """The benchmark's two goals (FLamby's pooled accuracy federated; 0.70 under DP at ε=1),
    stated as met or not from the table itself."""
    ours = summary.melt(
        id_vars="method", value_vars=[c for c in ("flamby_mean", "tuned_mean") if c in summary]
    )
    federated = ours[ours["method"].isin(["fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad"])]
    dp1 = ours[ours["method"] == "dp fedavg ε=1"]
    parts = []
    if len(federated):
        best = federated.loc[federated["value"].idxmax()]
        met = "met" if best["value"] >= GOAL_FEDERATED else "NOT met"
        parts.append(
            f"Best federated: {best['method']} ({best['variable'].removesuffix('_mean')}) "
            f"{best['value']:.4f} vs goal {GOAL_FEDERATED} (FLamby pooled): {met}."
        )
    if len(dp1):
        best = dp1["value"].max()
        parts.append(
            f"DP FedAvg at ε=1: best {best:.4f} vs goal {GOAL_DP}: {'met' if best >= GOAL_DP else 'NOT met'}."
        )
    return " ".join(parts)


def bar_chart(summary: pd.DataFrame, path: Path) -> None:
    """Grouped bars per method: FLamby published, ours with FLamby's hp, ours tuned."""
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width, x = 0.27, range(len(summary))
    bars = [
        ("flamby_published", None, "FLamby published"),
        ("flamby_mean", "flamby_sd", "ours, FLamby hp"),
        ("tuned_mean", "tuned_sd", "ours, tuned"),
    ]
    for i, (column, sd, label) in enumerate(bars):
        if column in summary:
            ax.bar(
                [v + (i - 1) * width for v in x],
                summary[column].fillna(0),
                width,
                yerr=summary[sd].fillna(0) if sd in summary else None,
                label=label,
                capsize=2,
            )
    ax.axhline(GOAL_FEDERATED, color="grey", linestyle="--", linewidth=1, label="FLamby pooled")
    ax.set_xticks(list(x), summary["method"], rotation=35, ha="right")
    ax.set_ylabel("mean accuracy over centres")
    ax.set_ylim(0.4, 0.9)
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    ax.set_title("Fed-Heart-Disease: FLamby protocol")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_results(folders: list[Path]) -> list:
    """The RunResults an earlier run wrote to each folder's per-run and DP CSVs."""
    results = []
    for folder in folders:
        runs = pd.read_csv(folder / f"{STEM}_runs.csv")
        dp = pd.read_csv(folder / f"{STEM}_dp.csv")
        for _, r in runs.iterrows():
            mine = dp[
                (dp["method"] == r["method"]) & (dp["setting"] == r["setting"]) & (dp["seed"] == r["seed"])
            ]
            steps = tuple(
                (d.site, float(d.noise_multiplier), float(d.sample_rate), int(d.steps), float(d.epsilon))
                for d in mine.itertuples()
            )
            results.append(
                RunResult(
                    r["method"],
                    r["setting"],
                    int(r["seed"]),
                    float(r["mean_centre_accuracy"]),
                    float(r["pooled_accuracy"]),
                    float(r["pooled_auroc"]),
                    steps,
                )
            )
    return results


def write_results(results, out: Path, *, seconds: float) -> None:
    results = sorted(results, key=lambda r: METHODS.index(r.method))  # table in METHODS order

    out.mkdir(parents=True, exist_ok=True)
    runs = run_frame(results)
    summary = summary_frame(runs, FLAMBY_PUBLISHED)
    runs.to_csv(out / f"{STEM}_runs.csv", index=False)
    dp_frame(results).to_csv(out / f"{STEM}_dp.csv", index=False)
    summary.to_csv(out / f"{STEM}.csv", index=False)
    text = markdown(summary, seconds=seconds, seeds=sorted(runs["seed"].unique().tolist()))
    (out / f"{STEM}.md").write_text(text)
    (out / f"{STEM}_seconds.txt").write_text(f"{seconds:.0f}")
    bar_chart(summary, out / f"{STEM}.png")
    print(text)
