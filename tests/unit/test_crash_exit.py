"""A runtime crash ends lhsfed-train with its one line even when the crashed runtime left a
thread that never ends (Ray failing to start under load left Flower's server thread waiting,
and the command hung in the interpreter's join of it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import threading, time
    from federation.coordinator.launcher import _crash_exit
    if {stuck}:
        threading.Thread(target=lambda: time.sleep(3600), daemon=False).start()
    _crash_exit("RuntimeError: Simulation Runtime crashed.", 1)
    """
)


def _run(stuck: bool) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(stuck=stuck)], capture_output=True, text=True, timeout=60
    )  # without such a thread, _crash_exit is sys.exit as before (every other crash test)


def test_a_crash_with_a_thread_that_never_ends_exits_with_its_line():
    proc = _run(stuck=True)

    assert proc.returncode == 1
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "lhsfed-train: error: RuntimeError: Simulation Runtime crashed."
    )
