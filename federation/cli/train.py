"""``lhsfed-train``: the coordinator's Hydra launcher, behind one check a hospital install needs.

The launcher lives in ``federation.coordinator`` and needs the ``coordinator`` extra (Hydra, the
simulation runtime). On a base (site) install it says so in one line, exit 2, not a traceback.
A campaign (``campaign=NAME``) writes its report and model card before it is logged, with the
modeler's own ``lhsfed evaluate`` and ``lhsfed export`` (``write_campaign_files``), which the
launcher's layer does not import: it is handed in here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from federation.cli.main import OWN_PACKAGES


def main() -> None:
    try:
        from federation.coordinator.launcher import main as launch
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in OWN_PACKAGES:
            raise  # a bug of ours, not a missing extra
        print(
            f"lhsfed-train: error: the launcher needs the Python module {err.name!r}, which is not "
            "installed here; install the coordinator's extra: pip install 'lhs-federation[coordinator]'",
            file=sys.stderr,
        )
        sys.exit(2)
    from federation.coordinator.launcher import use_campaign_files

    use_campaign_files(write_campaign_files)
    launch()


def write_campaign_files(run_dir: Path) -> None:
    """A campaign's report (``lhsfed evaluate``: evaluation.json, report.html, report.md) and
    model card (``lhsfed export``: export/model.pt, export/model_card.json) in its run folder.
    In simulation the coordinator scores the simulated sites' test rows; a deployment run is
    reported from the sites' own releases in metrics.jsonl (``--from-rounds``), as
    ``lhsfed evaluate`` always does for one."""
    from federation.cli.evaluate import evaluate_to_folder
    from federation.cli.export import export_run
    from federation.modeler.run_loader import federation_mode

    evaluate_to_folder(run_dir, from_rounds=federation_mode(run_dir) == "deployment")
    export_run(run_dir, "torchscript")  # its card reuses the evaluation just written (same round)
