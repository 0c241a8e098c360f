"""The coordinator's launcher.log in a deployment holds our lines, not alembic's.

Importing the deployment path imports Flower's simulation package and with it alembic, which
logs one INFO line per plugin. The launcher logs at INFO (Hydra's job logging), so this
checks in a fresh interpreter with the root logger at INFO, as there.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
{imports}
"""


def _logged(imports: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(imports=imports)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_importing_the_deployment_path_logs_no_alembic_lines():
    assert "alembic" not in _logged("import federation.coordinator.deployment")


def test_control_alembic_logs_when_flower_simulation_is_imported_alone():
    assert "alembic.runtime.plugins" in _logged("import flwr.simulation.run_simulation")
