"""A benchmark's ``--quick`` smoke run into a test's folders (the quality and frontier tests)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


def quick_run(main: Callable[[list[str]], dict[str, Any]], tmp_path_factory, name: str):
    """(its output folder, its results): ``main(["--quick", ...])`` with the run folders kept."""
    out, work = tmp_path_factory.mktemp(name), tmp_path_factory.mktemp("runs")
    try:
        results = main(["--quick", "--out", str(out), "--workdir", str(work)])
    finally:
        logging.disable(logging.NOTSET)  # the benchmark's entry point silences every logger
    return out, results
