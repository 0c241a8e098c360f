"""Both Flower apps import the heavy libraries whole before anything else of theirs: Flower's
simulation loads the ServerApp and the ClientApp in two threads at once, and a full-suite
``flwr run`` once failed with "cannot import name 'clone' from partially initialized module
'sklearn.base'" (federation/core/eager_imports.py)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.helpers.runs import REPO


@pytest.mark.parametrize("app", ["client/app.py", "server/app.py"])
def test_the_app_imports_the_libraries_first(app):
    tree = ast.parse((REPO / app).read_text())
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    first = next(n for n in imports if not (isinstance(n, ast.ImportFrom) and n.module == "__future__"))
    assert isinstance(first, ast.Import) and first.names[0].name == "federation.core.eager_imports"


def test_the_eager_module_leaves_every_library_the_apps_share_complete():
    """In a fresh interpreter: after it, the libraries are whole (the second thread then finds
    them in sys.modules), and importing both apps adds no sklearn or torch submodule that a
    thread could still be half-way through at the other's start."""
    code = (
        "import sys, federation.core.eager_imports\n"
        "before = {m for m in sys.modules if m.split('.')[0] in ('sklearn', 'torch', 'opacus')}\n"
        "from sklearn.base import clone\n"
        "import client.app, server.app\n"
        "after = {m for m in sys.modules if m.split('.')[0] in ('sklearn', 'torch', 'opacus')}\n"
        "print(len(before), sorted(after - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    count, added = out.stdout.split(" ", 1)
    assert int(count) > 100, out.stdout
    assert added.strip() == "[]", added
