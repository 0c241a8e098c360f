"""Ctrl-C (SIGINT to the process group) and SIGTERM stop a real ``lhsfed-train`` at once:
exit 130 / 143, one line, no Ray process left; ``resume=`` then completes a DP run with every
site's ε (recomputed from its ledger with Opacus) within the target, although the ledgers
keep the interrupted round's steps.

A site that had paid for the interrupted round either was stopped before its update was
complete (it trains the round again, at the σ that keeps its run within the target) or had
kept it (client.kept_updates: the resume gets it again, at no charge). Which one depends on
where the signal caught its training; both are checked. The σ raise alone, deterministically:
tests/unit/test_budget_resume.py.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from client.kept_updates import UPDATES
from client.ledger import open_site_ledger
from client.site_policy import LEDGER_SUFFIX, simulated_policy
from client.site_state import state_dir
from federation.coordinator.site_ledgers import recorded_folder
from federation.core.records import read_rounds
from server.checkpoint import load_resume_state
from tests.helpers.privacy_runs import rdp_epsilon
from tests.helpers.runs import LAUNCHER

pytestmark = pytest.mark.slow
SITES = ("cleveland", "hungary", "switzerland", "va")
TARGET = 3.0
BOUND_S = 10.0  # the promised bound on the time from the signal to the exit


def _ours(mark: str) -> list[str]:
    """Command lines of live processes started with our marker in their environment."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except OSError:
            continue
    return found


def _reserved_round(run_dir: Path, site: str) -> int:
    """Highest round the site's ledger holds steps for (read-only; 0 before any)."""
    folder = recorded_folder(run_dir)  # the launcher writes site_policy.json before the sites start
    if folder is None:
        return 0
    path = folder / f"{site}{LEDGER_SUFFIX}"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT max(server_round) FROM spend").fetchone()[0] or 0)
    except sqlite3.Error:
        return 0


def _interrupt(
    tmp: Path, config: tuple[str, ...], sig: signal.Signals, *, to_group: bool, ready
) -> tuple[subprocess.CompletedProcess, float, list[str]]:
    """Start lhsfed-train, send ``sig`` once ``ready(run_dir)``; (result, seconds to exit, the
    processes of ours still alive after it)."""
    mark = uuid.uuid4().hex
    proc = subprocess.Popen(
        [str(LAUNCHER), *config, f"hydra.run.dir={tmp / 'run'}"],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "LHSFED_TEST_MARK": mark},
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    while not ready(tmp / "run") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "lhsfed-train ended before the signal: " + proc.stderr.read()[-2000:]
    sent = time.monotonic()
    (os.killpg if to_group else os.kill)(proc.pid, sig)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    took = time.monotonic() - sent
    print(f"{sig.name}: exit {proc.returncode} after {took:.2f}s")  # measured, shown with -s
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), took, _ours(mark)


def _in_round_2(run_dir: Path) -> bool:
    """Round 1 recorded and some site already reserved round 2's steps."""
    metrics = run_dir / "metrics.jsonl"
    return (
        metrics.exists()
        and len(metrics.read_text().splitlines()) == 1
        and any(_reserved_round(run_dir, site) >= 2 for site in SITES)
    )


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("interrupted")
    proc, took, left = _interrupt(tmp, ("rounds=3",), signal.SIGINT, to_group=True, ready=_in_round_2)
    paid_round_2 = {site for site in SITES if _reserved_round(tmp / "run", site) >= 2}
    return tmp / "run", proc, took, left, paid_round_2


def test_sigint_in_round_2_exits_130_at_once_in_one_line(interrupted):
    run_dir, proc, took, left, _ = interrupted

    assert proc.returncode == 130, proc.stderr[-3000:]
    assert took < BOUND_S
    assert left == []  # no raylet, GCS or worker of this run survives it
    done = load_resume_state(run_dir).round
    assert proc.stderr.strip().splitlines()[-1] == (
        f"lhsfed-train: interrupted after round {done}; resume with lhsfed-train resume={run_dir}"
    )
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.fixture(scope="module")
def resumed(interrupted, tmp_path_factory):
    run_dir = interrupted[0]
    cwd = tmp_path_factory.mktemp("resumer")
    # In-process: the same launcher, apps and ledgers without Ray's start (its stop is tested above).
    proc = subprocess.run(
        [str(LAUNCHER), f"resume={run_dir}", "federation.runtime=inprocess"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, cwd, proc


def _ledger(run_dir: Path, site: str):
    return open_site_ledger(simulated_policy(site, run_folder=run_dir), site)


def _kept_round_2(run_dir: Path, site: str) -> bool:
    """The site kept a complete round-2 update of this run (its JSON is written last)."""
    updates = state_dir(simulated_policy(site, run_folder=run_dir)) / UPDATES
    return any(updates.glob("*/round-2-*.json"))


def test_resume_completes_within_every_sites_target(interrupted, resumed):
    run_dir, cwd, proc = resumed
    paid_round_2 = interrupted[-1]
    assert paid_round_2  # the signal came once a site had reserved round 2 (_in_round_2)
    assert [r["round"] for r in read_rounds(run_dir)] == [1, 2, 3]
    assert load_resume_state(run_dir).round == 3
    for site in SITES:
        entries = _ledger(run_dir, site).entries()
        history = [e.accountant_step for e in entries]
        # Opacus's own analysis over every step the ledger holds, the interrupted round's too.
        assert rdp_epsilon(history, delta=entries[0].delta) <= TARGET, site
        training = [e for e in entries if not e.is_release]
        rounds = [e.server_round for e in training]
        if site not in paid_round_2:
            assert rounds == [1, 2, 3], (site, rounds)
        elif rounds == [1, 2, 2, 3]:  # stopped mid-training: round 2 trained and paid again
            # The control: had the resumed rounds kept the run's first σ, the site would overspend.
            first_sigma = training[0].noise_multiplier
            control = [
                e.accountant_step if e.is_release else (first_sigma, e.sample_rate, e.steps) for e in entries
            ]
            assert rdp_epsilon(control, delta=entries[0].delta) > TARGET, site
            assert training[-1].noise_multiplier > first_sigma
        else:  # its update was complete: the resume got it again, nothing charged twice
            assert rounds == [1, 2, 3] and _kept_round_2(run_dir, site), (site, rounds)
        if site in paid_round_2:  # the resumed run said so, from the site's own ledger
            assert f"ε charged at site {site} for round(s) 2" in proc.stdout + proc.stderr, site


def test_resume_leaves_no_folder_of_its_own_and_logs_into_the_run(resumed):
    run_dir, cwd, proc = resumed
    assert list(cwd.iterdir()) == []  # no outputs/runs/DATE/TIME for the resume itself
    assert "resuming" in (run_dir / "launcher.log").read_text()
    assert f"run folder: {run_dir}" in proc.stdout and "Traceback" not in proc.stderr


def test_sigterm_exits_143_at_once_and_leaves_no_ray_process(tmp_path):
    def round_1_done(run_dir: Path) -> bool:
        return (run_dir / "metrics.jsonl").exists()

    proc, took, left = _interrupt(
        tmp_path, ("rounds=3", "privacy=off"), signal.SIGTERM, to_group=False, ready=round_1_done
    )

    assert proc.returncode == 143, proc.stderr[-3000:]
    assert took < BOUND_S and left == []
    assert re.fullmatch(
        r"lhsfed-train: interrupted after round [12]; resume with lhsfed-train "
        rf"resume={re.escape(str(tmp_path / 'run'))}",
        proc.stderr.strip(),
    )


STOPPED_SCRIPT = """
import logging, subprocess, sys, time
from pathlib import Path
logging.getLogger().addHandler(logging.NullHandler())  # as the launcher: logs to a file only
from federation.coordinator.interrupt import exit_on_signals, kill_descendants
child = subprocess.Popen(["sleep", "300"])
def stop():  # what a deployment's stop_run does first: end the processes this one started
    print("stopped", kill_descendants(), file=sys.stderr, flush=True)
with exit_on_signals(Path(sys.argv[1]), stop=stop):
    print(child.pid, flush=True)
    time.sleep(300)
"""


def test_the_handler_ends_the_processes_it_started_and_says_nothing_is_resumable(tmp_path):
    """The mechanism a deployment uses too, without a runtime: no round finished here."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STOPPED_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    child = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 130
    assert err.splitlines() == [
        "stopped 1",
        "lhsfed-train: interrupted before round 1 finished; "
        f"nothing to resume: start a new run (another hydra.run.dir than {tmp_path})",
    ]
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
