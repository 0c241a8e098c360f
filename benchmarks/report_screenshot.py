"""The report's screenshot in docs: the default DP run on uci_heart (its spec marks sex and age
bands as subgroups), ``lhsfed evaluate RUN --threshold suggest``, rendered whole by headless
Chromium, with the same report's markdown beside it.

    python -m benchmarks.report_screenshot [--out benchmarks/results/report_default.png]

One in-process federation (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from federation.core.dataspec import parse_dataset_spec

CHROMIUM = "/usr/bin/chromium"
LAUNCHER = Path(sys.executable).parent / "lhsfed-train"
LHSFED = Path(sys.executable).parent / "lhsfed"


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
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/report_default.png"))
    parser.add_argument("--height", type=int, default=9000, help="page height in px (the whole report)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run(
            [str(LAUNCHER), "federation.runtime=inprocess", f"hydra.run.dir={run}"], check=True, cwd=tmp
        )
        subprocess.run([str(LHSFED), "evaluate", str(run), "--threshold", "suggest"], check=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shot = screenshot(run / "report.html", args.out, Path(tmp) / "profile", height=args.height)
        shot.check_returncode()
        markdown = args.out.with_suffix(".md")
        markdown.write_text((run / "report.md").read_text())
    print(f"wrote {args.out} and {markdown}")


if __name__ == "__main__":
    main()
