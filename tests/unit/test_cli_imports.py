"""``lhsfed --help`` (and every ``lhsfed CMD --help``) imports no third-party library.

Each command module registers its parser with standard-library imports only and imports its
layer (torch, pandas, scikit-learn, Opacus, Flower, rich, cryptography) inside its handler,
so the help of any command prints without paying seconds for them. Pinned by what a fresh
interpreter holds in ``sys.modules`` after printing the helps, not by timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from federation.cli.main import COMMAND_MODULES
from tests.helpers.runs import REPO

COMMANDS = [name.rsplit(".", 1)[-1] for name in COMMAND_MODULES]
HELPS = [[], *([c] for c in COMMANDS), ["site", "check"], ["pki", "init"], ["pki", "register"]]

# For each argv: print its help as the console script does, then name the top-level modules
# loaded since start that are neither the standard library nor the project's own packages.
PROBE = """
import contextlib, io, json, sys
bare, own, report = set(sys.modules), {"federation", "client", "server", "strategies"}, {}
from federation.cli.main import build_parser
for argv in json.loads(sys.argv[1]):
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    loaded = {n.split(".")[0] for n in set(sys.modules) - bare}
    report[" ".join(argv)] = [text.getvalue(), sorted(loaded - set(sys.stdlib_module_names) - own)]
print(json.dumps(report))
"""


def _helps() -> dict[str, list]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HELPS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return json.loads(proc.stdout)


def test_every_help_prints_with_no_third_party_import():
    report = _helps()

    for argv, (help_text, loaded) in report.items():
        assert help_text.startswith(f"usage: lhsfed {argv}".rstrip()), help_text
        assert loaded == [], f"`lhsfed {argv} --help` imported {loaded}: import it in the handler"
    assert all(command in report[""][0] for command in COMMANDS)
