"""One environment variable set for the length of a run, its previous value back afterwards.

The simulated sites read their policy from ``LHSFED_*`` variables (Ray workers inherit them,
the in-process ClientApp reads them). A launcher that runs in a longer-lived process (the
test suite, a notebook, a sweep) must not leave one behind: a later run, or a SuperLink
started from that process, would read another run's data folder or ledgers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from client.site_policy import DATA_DIR_ENV


@contextmanager
def exported(name: str, value: str | None) -> Iterator[None]:
    """``name=value`` inside the block, as it was outside it; None changes nothing."""
    if value is None:
        yield
        return
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def site_data_dir(data_dir: str | Path | None) -> AbstractContextManager[None]:
    """``LHSFED_SITE_DATA_DIR`` (the simulated sites' data folder) for one run; None: as it is."""
    return exported(DATA_DIR_ENV, None if data_dir is None else str(Path(data_dir).resolve()))
