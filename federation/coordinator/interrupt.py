"""Ctrl-C and SIGTERM stop ``lhsfed-train`` at once, its runtime's processes included.

Flower's simulation runs the ServerApp in a non-daemon thread that waits on replies no one
will send once the runtime stops, so a ``KeyboardInterrupt`` left the interpreter blocked in
that thread's join at exit. Instead the launcher installs a handler that ends the runtime's
processes (Ray's raylet, GCS and workers; the ``flwr`` CLI in a deployment), prints one line
and leaves with ``os._exit(128 + signal)``, the shell's convention (130 SIGINT, 143 SIGTERM).

Leaving that abruptly is safe for the same reason SIGKILL-and-resume is: the checkpoint, the
round records and the model are written atomically (checkpoint first), and each site's
ledger is an SQLite transaction, so a round in flight is either reserved whole (its ε stays
spent, as it must) or not at all.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def descendants(pid: int | None = None) -> list[int]:
    """Every process below ``pid`` (default: this one), read from ``/proc`` (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [os.getpid() if pid is None else pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def kill_descendants() -> int:
    """SIGKILL every process this one started, directly or not; returns how many.

    All are listed first and then killed together: a worker whose raylet died first would
    be re-parented out of reach. No graceful phase: a runtime shutting down slowly would let
    the ServerApp record a round of failed replies that never happened.
    """
    pids = descendants()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


def last_round(run_dir: Path) -> int:
    """The round a resume starts after (0: none finished); read from the checkpoint."""
    from server.checkpoint import load_resume_state

    try:
        return load_resume_state(Path(run_dir)).round
    except Exception:  # noqa: BLE001 - no readable checkpoint: nothing to resume
        return 0


def interrupted_line(run_dir: Path) -> str:
    done = last_round(run_dir)
    if done == 0:
        return (
            f"interrupted before round 1 finished; nothing to resume: start a new run "
            f"(another hydra.run.dir than {run_dir})"
        )
    return f"interrupted after round {done}; resume with lhsfed-train resume={run_dir}"


@contextmanager
def exit_on_signals(run_dir: Path, stop: Callable[[], None] = kill_descendants) -> Iterator[None]:
    """While inside: SIGINT/SIGTERM call ``stop`` (end the runtime), print the one line and
    exit 128 + the signal number. A second signal during that is ignored."""

    def handler(signum: int, _frame) -> None:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            stop()
        finally:
            line = interrupted_line(run_dir)
            _append_to_log_files(f"{line} (signal {signal.Signals(signum).name})")
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except RuntimeError:  # the main thread was writing to it: reentrant call
                    pass
            print(f"lhsfed-train: {line}", file=sys.stderr, flush=True)
            _flush_log_files()
            os._exit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals (a test calling the launcher's train)
        return
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _append_to_log_files(message: str) -> None:
    """The interrupt line, into every log file, through a descriptor of its own.

    A signal handler runs in the main thread between two of its bytecodes, possibly inside the
    log handler's own write (a deployment logs every streamed line): writing through that
    buffered stream again raises "reentrant call" and logging drops the record (seen once in
    the operations test: launcher.log without its interrupt line). An O_APPEND write of the
    formatted record to a fresh descriptor does not touch that stream."""
    record = log.makeRecord(log.name, logging.WARNING, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            continue
        try:
            fd = os.open(handler.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (handler.format(record) + "\n").encode())
            finally:
                os.close(fd)
        except OSError:  # exiting anyway; the console still gets the line
            pass


def _flush_log_files() -> None:
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
