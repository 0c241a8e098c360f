"""The interrupt line reaches launcher.log even when the signal lands inside a log write
(federation/coordinator/interrupt.py: ``_append_to_log_files``)."""

from __future__ import annotations

import logging

from federation.coordinator.interrupt import _append_to_log_files


def test_the_line_is_appended_with_the_handlers_format_while_its_stream_is_busy(tmp_path):
    path = tmp_path / "launcher.log"
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        handler.stream.write("a record the main thread had not flushed")  # mid-write: buffered
        _append_to_log_files("interrupted after round 1; resume with lhsfed-train resume=R (signal SIGINT)")
        text = path.read_text()
    finally:
        root.removeHandler(handler)
        handler.close()
    assert text == (
        "[federation.coordinator.interrupt][WARNING] - interrupted after round 1; "
        "resume with lhsfed-train resume=R (signal SIGINT)\n"
    )
