"""A hospital installs the base package only: what a site runs imports nothing outside it.

The site runs the ClientApp (``client/``, ``federation/core/``), the pinned runner beside
``flower-supernode``, ``lhsfed site check`` and its node key and trusted publishers
(``federation/security/``). Each of these, imported in a fresh interpreter, may load only the
distributions the base ``dependencies`` install (with what they require); the modeler's and
coordinator's libraries (matplotlib, ONNX, Hydra) live in extras the SuperNode image never
installs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.helpers.runs import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
SITE_PACKAGES = ("client", "federation/core")  # every module, not only what client.app reaches
SITE_MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for package in SITE_PACKAGES
    for path in (REPO / package).rglob("*.py")
) + [
    "federation.cli.main",
    "federation.cli.site",
    "federation.cli.pki",
    "federation.security.pki",
    "federation.security.app_signing",
]
NOT_AT_A_SITE = [
    "matplotlib",
    "onnx",
    "onnxruntime",
    "hydra",
    "omegaconf",
    "federation.modeler",
    "federation.coordinator",
]

# A site image in miniature: the top-level modules of every distribution outside the base
# install (argv[1], JSON) cannot be imported; then the given modules are imported (argv[2:])
# and what was loaded is printed. Libraries' own optional imports (torch tries tqdm) fall back
# as they do in the image; a project module that needs an extra fails with ModuleNotFoundError.
PROBE = """
import importlib, json, sys
blocked = set(json.loads(sys.argv[1]))

class NotInstalledAtASite:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the base install)", name=name)
        return None

sys.meta_path.insert(0, NotInstalledAtASite())
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str], extra: str = "") -> set[str]:
    """Installed distributions that ``requirements`` pull in, with what those require."""
    todo, seen = [(r, extra) for r in requirements], set()
    while todo:
        text, context = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": context}):
            continue
        for wanted in ["", *req.extras]:
            if (_norm(req.name), wanted) in seen:
                continue
            seen.add((_norm(req.name), wanted))
            try:
                todo += [(r, wanted) for r in metadata.requires(req.name) or []]
            except metadata.PackageNotFoundError:
                pass  # not installed here (an optional marker elsewhere): imports nothing
    return {name for name, _ in seen}


def _outside_base(*extras: str) -> list[str]:
    """Top-level module names that only distributions outside the base install (plus
    ``extras``) provide."""
    wanted = PYPROJECT["dependencies"] + [r for e in extras for r in PYPROJECT["optional-dependencies"][e]]
    base = _closure(wanted) | {_norm(PYPROJECT["name"])}
    return sorted(
        top
        for top, dists in metadata.packages_distributions().items()
        if not {_norm(d) for d in dists} & base and top not in sys.stdlib_module_names
    )


def _import_as_at_a_site(*modules: str, extras: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(_outside_base(*extras)), *modules],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_site_modules_import_with_the_base_dependencies_only():
    proc = _import_as_at_a_site(*SITE_MODULES)

    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-1]
    loaded = json.loads(proc.stdout)
    assert not [m for m in NOT_AT_A_SITE if m in loaded]


@pytest.mark.parametrize(
    ("extra", "modules"),
    [
        ("coordinator", ("server.comparison", "server.drift", "federation.coordinator.launcher")),
        ("modeler", ("federation.modeler.report", "federation.modeler.comparison_page")),
    ],
)
def test_coordinator_and_modeler_modules_import_with_their_extra_alone(extra, modules):
    """The test extra installs everything (dcurves brings statsmodels): each extra must still
    carry what its own modules use, e.g. statsmodels, which federation.core.decision_curve
    imports when it draws calibration intervals (so the shared module imports at a site)."""
    used_later = "statsmodels.stats.proportion"
    proc = _import_as_at_a_site(*modules, used_later, extras=(extra,))
    control = _import_as_at_a_site(used_later)

    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-1]
    assert control.returncode != 0 and "not in the base install" in control.stderr


def test_a_module_that_needs_an_extra_fails_as_at_a_site():
    """Control: the modeler's plots need matplotlib, which a site image lacks."""
    proc = _import_as_at_a_site("federation.modeler.plots")

    assert proc.returncode != 0
    assert "No module named 'matplotlib' (not in the base install)" in proc.stderr


def test_the_extras_are_outside_the_base_so_the_check_can_fail():
    base = _closure(PYPROJECT["dependencies"])
    extras = PYPROJECT["optional-dependencies"]

    for distribution in ("matplotlib", "onnx", "onnxruntime", "hydra-core", "omegaconf"):
        assert distribution not in base
    assert {"matplotlib", "onnx", "onnxruntime"} <= _closure(extras["modeler"])
    assert "hydra-core" in _closure(extras["coordinator"])


def test_the_test_extra_installs_every_extra():
    extras = PYPROJECT["optional-dependencies"]
    (self_ref,) = [Requirement(r) for r in extras["test"] if _norm(Requirement(r).name) == "lhs-federation"]

    assert set(extras) - {"test"} <= self_ref.extras
    assert "-e '.[test]'" in (REPO / "Makefile").read_text()


def _pip_installs_of_the_project(dockerfile: str) -> list[str]:
    """The targets of each ``pip install`` of /app (this project) in a Dockerfile."""
    text = (REPO / "docker" / dockerfile).read_text().replace("\\\n", " ")
    return re.findall(r"pip install [^&\n]*?(['\"]?/app\S*)", text)


def test_the_supernode_image_installs_no_extra_and_the_superlink_what_evaluate_needs():
    """The coordinator runs `lhsfed evaluate RUN` where the run folder is, in the SuperLink's
    image: it needs the modeler's extra (matplotlib) beside the coordinator's; never `test`."""
    supernode = _pip_installs_of_the_project("supernode.Dockerfile")
    superlink = _pip_installs_of_the_project("superlink.Dockerfile")

    assert supernode == ["/app"]
    (target,) = superlink
    extras = set(re.search(r"\[([^\]]*)\]", target).group(1).split(","))
    assert extras == {"coordinator", "modeler"}
    assert {"matplotlib", "hydra-core", "statsmodels"} <= _closure(
        [r for e in extras for r in PYPROJECT["optional-dependencies"][e]]
    )
