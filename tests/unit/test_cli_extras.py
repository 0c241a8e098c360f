"""A command whose extra is not installed (a hospital has the base only) says which to install.

Without the ``modeler`` extra, ``lhsfed evaluate`` cannot import matplotlib: the user gets one
line naming the module and the ``pip install`` that fixes it, and exit code 2, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.runs import REPO

# matplotlib is absent, as in the SuperNode image; then `lhsfed evaluate RUN_DIR` runs.
WITHOUT_MATPLOTLIB = """
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NotInstalled())
from federation.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_command_without_its_extra_names_the_extra_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, "evaluate", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )

    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("lhsfed evaluate: error: this command needs the Python module 'matplotlib'")
    assert line.endswith("pip install 'lhs-federation[modeler]'")
    assert "[coordinator]" not in line  # the coordinator's image has that one: it is not the fix


def test_the_extra_named_is_the_one_that_lists_the_module():
    """Read from the installed package's metadata, i.e. pyproject.toml's extras."""
    from federation.cli.main import extras_with

    assert extras_with("matplotlib") == ["modeler"]
    assert extras_with("onnxruntime") == ["modeler"]
    assert extras_with("hydra") == ["coordinator", "modeler"]
    assert extras_with("mlflow") == ["registry"]
    assert extras_with("no_such_module") == []


# Hydra is absent, as in the SuperNode image; then `lhsfed-train` (its console-script entry) runs.
WITHOUT_HYDRA = WITHOUT_MATPLOTLIB.replace('"matplotlib"', '"hydra"').replace(
    "from federation.cli.main import main\nsys.exit(main(sys.argv[1:]))",
    "from federation.cli.train import main\nmain()",
)


def test_the_launcher_without_the_coordinator_extra_names_it_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_HYDRA],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )

    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("lhsfed-train: error: the launcher needs the Python module 'hydra'")
    assert "pip install 'lhs-federation[coordinator]'" in line
    assert not list(tmp_path.iterdir())  # nothing written
