"""Checkpoints: round trip, clear errors, and never half-written under SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from flwr.serverapp.strategy import FedAdam

from federation.core.errors import ConfigError
from federation.core.records import Evaluation, RoundRecord
from server.checkpoint import (
    CHECKPOINT,
    ResumeState,
    load_resume_state,
    remove_stale_temporaries,
    save_resume_state,
)
from strategies.state import load_strategy_state, strategy_state


def _checkpoint(round_: int, size: int = 4) -> ResumeState:
    """A checkpoint whose every value says which round wrote it."""
    return ResumeState(
        round=round_,
        arrays={"w": torch.full((size,), float(round_))},
        strategy={"m_t": {"w": torch.full((3,), float(round_))}},
        records=[
            RoundRecord(round=r, evaluate=Evaluation(pooled={"auroc": None})) for r in range(1, round_ + 1)
        ],
        epsilon_by_site={"va": 0.5 * round_, "hungary": None},
        best_arrays={"w": torch.full((size,), float(round_ - 1))},
    )


def test_round_trip(tmp_path):
    save_resume_state(tmp_path, _checkpoint(3))
    got = load_resume_state(tmp_path)
    assert got.round == 3 and torch.equal(got.arrays["w"], torch.full((4,), 3.0))
    assert got.records[-1].round == 3 and got.epsilon_by_site == {"va": 1.5, "hungary": None}
    assert torch.equal(got.best_arrays["w"], torch.full((4,), 2.0))  # the selected round's model


def test_fedadam_moments_survive_a_round_trip(tmp_path):
    strategy = FedAdam()
    strategy.m_t = {"w": torch.arange(3.0).numpy()}
    strategy.v_t = {"w": torch.ones(3).numpy()}
    save_resume_state(tmp_path, ResumeState(1, {}, strategy_state(strategy)))

    fresh = FedAdam()
    load_strategy_state(fresh, load_resume_state(tmp_path).strategy)
    assert fresh.m_t["w"].tolist() == [0.0, 1.0, 2.0] and fresh.v_t["w"].tolist() == [1.0] * 3


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_resume_state(tmp_path)
    (tmp_path / CHECKPOINT).write_bytes(b"half a file")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_resume_state(tmp_path)


def _write_forever(run_dir: Path) -> None:  # runs in a child process until it is killed
    round_ = 1
    while True:
        save_resume_state(run_dir, _checkpoint(round_, size=1_000_000))  # ~4 MB per write
        round_ += 1


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_a_half_written_checkpoint(tmp_path):
    """Kill a writer process at random moments, 25 times; the file always loads whole."""
    save_resume_state(tmp_path, _checkpoint(0, size=1_000_000))
    # forkserver: a child forked from a process that never ran torch (plain fork deadlocks).
    context, rng, interrupted = multiprocessing.get_context("forkserver"), random.Random(0), 0
    context.set_forkserver_preload(["server.checkpoint", "tests.integration.test_checkpoint"])
    for _ in range(25):
        writer = context.Process(target=_write_forever, args=(tmp_path,))
        writer.start()
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        interrupted += bool(remove_stale_temporaries(tmp_path))  # a write was cut mid-way
        got = load_resume_state(tmp_path)
        assert torch.equal(got.arrays["w"], torch.full((1_000_000,), float(got.round)))
        assert [r.round for r in got.records] == list(range(1, got.round + 1))
    assert interrupted > 0, "no kill landed during a write: the test proved nothing"
