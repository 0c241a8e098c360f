"""A crafted run folder runs nothing, and a deployment never goes plaintext.

A crafted ``.pt`` file whose unpickling writes a marker file stands in for the review's
``model.pt`` that ran ``id``: every command that reads a run folder must refuse it with one
line naming the file, and the marker must not exist afterwards. The control shows that an
unrestricted ``torch.load`` of the same file does write the marker. No federation runs here:
the run folder's config is composed with Hydra's compose API (fast).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from federation.cli.main import main as lhsfed
from federation.coordinator.launcher import CONFIG_DIR
from federation.core.errors import ConfigError, DataError
from federation.modeler.audit.runner import audit_run
from server.checkpoint import load_resume_state
from tests.helpers.runs import run_launcher

LHSFED = Path(sys.executable).parent / "lhsfed"
CRAFTED = ("model.pt", "rounds/round_001.pt", "checkpoint.pt")


class _WritesMarker:
    """Unpickling this calls ``exec``: any code at all would run the same way."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _craft(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_spec": _WritesMarker(marker), "state_dict": {}, "round": 1}, path)
    return path


def _write_run_config(run: Path) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config")
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "marker-written-by-unpickling"


@pytest.fixture
def crafted_run(tmp_path, marker) -> Path:
    """A run folder (real composed config) whose model.pt, round and checkpoint are crafted."""
    run = tmp_path / "run"
    _write_run_config(run)
    for name in CRAFTED:
        _craft(run / name, marker)
    return run


def test_control_unrestricted_torch_load_runs_the_crafted_file(crafted_run, marker):
    torch.load(crafted_run / "model.pt", weights_only=False)

    assert marker.read_text() == "ran"


@pytest.mark.parametrize(
    "command, file",
    [
        (["audit"], "model.pt"),
        (["evaluate"], "model.pt"),
        (["export"], "model.pt"),
        (["evaluate", "--round", "1"], "rounds/round_001.pt"),
        (["export", "--round", "1", "--format", "onnx"], "rounds/round_001.pt"),
    ],
)
def test_modeler_commands_refuse_a_crafted_file_and_run_nothing(crafted_run, marker, capsys, command, file):
    code = lhsfed([command[0], str(crafted_run), *command[1:]])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{crafted_run / file}: cannot be read safely" in err[0]
    assert "exec" in err[0] and "nothing in it was run" in err[0]
    assert not marker.exists()
    assert not (crafted_run / "export").exists() and not (crafted_run / "audit.json").exists()


def test_audit_loads_the_run_through_the_weights_only_loader_and_runs_nothing(crafted_run, marker):
    with pytest.raises(DataError) as refused:
        audit_run(crafted_run, shadows=1)

    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{crafted_run / 'model.pt'}: cannot be read safely")
    assert not marker.exists() and not (crafted_run / "audit.json").exists()


def test_lhsfed_audit_cli_refuses_the_reviewed_attack(crafted_run, marker):
    proc = subprocess.run(
        [str(LHSFED), "audit", str(crafted_run)], capture_output=True, text=True, timeout=300
    )

    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert str(crafted_run / "model.pt") in proc.stderr
    assert not marker.exists()


def test_resume_refuses_a_crafted_checkpoint_and_runs_nothing(crafted_run, marker):
    with pytest.raises(ConfigError) as refused:
        load_resume_state(crafted_run)

    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{crafted_run / 'checkpoint.pt'}: cannot be read safely")
    assert not marker.exists()


def test_a_file_that_is_no_checkpoint_is_one_line(crafted_run, capsys):
    (crafted_run / "model.pt").write_bytes(b"not a checkpoint at all")

    assert lhsfed(["evaluate", str(crafted_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{crafted_run / 'model.pt'}: cannot be read safely" in err[0]


def _one_line_ca_cert_refusal(proc: subprocess.CompletedProcess) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "federation.ca_cert is null" in lines[0] and "federation.ca_cert=pki/ca.pem" in lines[0]


def test_deployment_without_ca_cert_is_refused(tmp_path):
    proc = run_launcher(
        tmp_path, "federation=deployment", "federation.ca_cert=null", "superlink=127.0.0.1:1", timeout=120
    )

    _one_line_ca_cert_refusal(proc)
    assert not (tmp_path / "run" / ".flwr-home").exists()  # no Flower connection was written


def test_deployment_without_ca_cert_dials_nothing(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        proc = run_launcher(
            tmp_path,
            "federation=deployment",
            "federation.ca_cert=null",
            f"superlink=127.0.0.1:{port}",
            timeout=120,
        )

        _one_line_ca_cert_refusal(proc)
        with pytest.raises(BlockingIOError):  # the kernel queued no connection from the run
            listener.accept()
        with socket.create_connection(("127.0.0.1", port)):  # control: a dial is seen
            listener.settimeout(30)
            connection, _ = listener.accept()
            connection.close()
