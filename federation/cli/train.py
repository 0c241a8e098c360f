"""``lhsfed-train``: the coordinator's Hydra launcher, behind one check a hospital install needs.

The launcher lives in ``federation.coordinator`` and needs the ``coordinator`` extra (Hydra, the
simulation runtime). On a base (site) install it says so in one line, exit 2, not a traceback.
"""

from __future__ import annotations

import sys

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
    launch()
