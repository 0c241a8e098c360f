"""The report's screenshot in docs: a default DP run on uci_heart, evaluated with sex and age
bands marked as subgroups and the suggested threshold, rendered by headless Chromium.

    python -m benchmarks.report_screenshot [--out benchmarks/results/report_subgroups.png]

One in-process federation (about a minute on 2 cores); the page is the report a modeler gets
from ``lhsfed evaluate RUN --threshold suggest`` with a spec that marks those subgroups.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from federation.core.dataspec import parse_dataset_spec
from federation.modeler import run_loader
from federation.modeler.report import write_reports
from federation.modeler.run_evaluation import EvalOptions, evaluate_run, scorable_sites

CHROMIUM = "/usr/bin/chromium"
LAUNCHER = Path(sys.executable).parent / "lhsfed-train"


def with_subgroups(spec):
    """The run's spec with ``subgroup: true`` on sex and ``subgroup_bins: [55]`` on age."""
    raw = json.loads(spec.to_json())
    for feature in raw["features"]:
        if feature["name"] == "sex":
            feature["subgroup"] = True
        if feature["name"] == "age":
            feature["subgroup_bins"] = [55]
    return parse_dataset_spec(raw)


def screenshot(page: Path, png: Path, profile: Path, *, height: int) -> subprocess.CompletedProcess:
    """Headless Chromium's screenshot of ``page`` (1200 px wide) into ``png``."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--window-size=1200,{height}",
         f"--screenshot={Path(png).resolve()}", Path(page).resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report_subgroups.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run(
            [str(LAUNCHER), "federation.runtime=inprocess", f"hydra.run.dir={run}"], check=True, cwd=tmp
        )
        checkpoint = run_loader.load_saved_model(run_loader.saved_model_path(run, None))
        checkpoint = dataclasses.replace(checkpoint, dataset=with_subgroups(checkpoint.dataset))
        sites, _ = scorable_sites(checkpoint.dataset)
        settings = run_loader.load_settings(run)
        evaluation, predictions = evaluate_run(
            run, settings, checkpoint, sites, EvalOptions(threshold="suggest")
        )
        config = (run / ".hydra" / "config.yaml").read_text()
        write_reports(run, evaluation, predictions, run_loader.read_round_records(run), config)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shot = screenshot(run / "report.html", args.out, Path(tmp) / "profile", height=5200)
        shot.check_returncode()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
