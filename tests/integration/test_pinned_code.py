"""A site runs only the ClientApp installed in its image (client/pinned_runner.py).

The attack: the coordinator submits a bundle whose client/app.py writes a marker file when
it is imported and when it handles a message. Control 1: Flower's own loader (what
``flwr-clientapp`` does) runs that code, so the marker test can fail. Control 2: the same
bundle with the unmodified client/ trains at the same sites. Sites: cleveland and hungary
of the shared walk-through network (docs/deployment.md), 1 round.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from client.app_pin import DEFAULT_PIN, NOT_PINNED, AppPin, installed_code, pin_problems
from federation.coordinator.deployment import STARTED, run_status
from federation.coordinator.flwr_connection import CONNECTION, run_flwr
from federation.coordinator.simulation import write_app_folder
from federation.core.records import read_rounds
from tests.helpers.deployment_net import BIN, DOCKER, REPO, Network
from tests.helpers.walkthrough import SITES

MARKING = """
# --- added by the coordinator: proof that this code ran -----------------------------
import pathlib as _pathlib

_MARKER = _pathlib.Path({marker!r})
_MARKER.parent.mkdir(parents=True, exist_ok=True)
with _MARKER.open("a") as _out:
    _out.write("imported\\n")


def _marked(_name, _handler):
    def _handle(message, context):
        with _MARKER.open("a") as out:
            out.write(f"handled {{_name}}\\n")
        return _handler(message, context)
    return _handle


app._registered_funcs = {{n: _marked(n, f) for n, f in app._registered_funcs.items()}}
"""


def _bundle(root: Path, *, marker: Path | None = None, publisher: str = "lhs-federation") -> Path:
    """The pinned app folder (as lhsfed-train writes it) plus a copy of this repo's client/;
    with ``marker``, its client/app.py is the coordinator's modified version."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    folder = write_app_folder(root, {**config, "rounds": 1, "run.output_dir": str(root / "run")})
    shutil.copytree(REPO / "client", folder / "client", ignore=shutil.ignore_patterns("__pycache__"))
    if marker is not None:
        with (folder / "client" / "app.py").open("a") as app:
            app.write(MARKING.format(marker=str(marker)))
    if publisher != "lhs-federation":
        pyproject = folder / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace('"lhs-federation"', f'"{publisher}"', 1))
    return folder


def _installed() -> dict[str, str]:
    import client
    import federation

    return installed_code({p.__name__: Path(p.__file__).parent for p in (client, federation)})


# ---- the check itself, on bundles built by Flower's own builder (fast) ----------------------


def test_unmodified_bundles_pass_the_pin(tmp_path):
    pin, installed = AppPin.parse(DEFAULT_PIN), _installed()
    bare = write_app_folder(tmp_path / "bare", {"rounds": 1})  # what lhsfed-train sends
    assert pin_problems(build_fab_from_disk(bare), pin, installed) == []
    copy = _bundle(tmp_path / "copy")
    assert pin_problems(build_fab_from_disk(copy), pin, installed) == []


def test_modified_added_or_missing_client_files_are_refused(tmp_path):
    pin, installed = AppPin.parse(DEFAULT_PIN), _installed()
    modified = _bundle(tmp_path / "modified", marker=tmp_path / "marker")
    assert pin_problems(build_fab_from_disk(modified), pin, installed) == [
        "bundle file client/app.py differs from the installed code"
    ]
    extra = _bundle(tmp_path / "extra")
    (extra / "client" / "helper.py").write_text("print('hi')\n")
    (extra / "client" / "budget.py").unlink()
    assert pin_problems(build_fab_from_disk(extra), pin, installed) == [
        "bundle file client/budget.py differs from the installed code",
        "bundle file client/helper.py differs from the installed code",
    ]
    assert not (tmp_path / "marker").exists()  # checking never imports the bundle


def test_another_identity_or_version_is_refused(tmp_path):
    installed = _installed()
    stranger = build_fab_from_disk(_bundle(tmp_path / "stranger", publisher="someone-else"))
    assert pin_problems(stranger, AppPin.parse(DEFAULT_PIN), installed) == [
        "app 'someone-else/lhs-federation-run' is not the pinned 'lhs-federation/lhs-federation-run'"
    ]
    ours = build_fab_from_disk(_bundle(tmp_path / "ours"))
    assert pin_problems(ours, AppPin.parse(DEFAULT_PIN + "==0.1.0"), installed) == []
    assert pin_problems(ours, AppPin.parse(DEFAULT_PIN + "==9.9"), installed) == [
        "version '0.1.0' is not the pinned '9.9'"
    ]
    with pytest.raises(ValueError, match="LHSFED_APP_PIN='nope': give PUBLISHER/NAME"):
        AppPin.parse("nope")


BOMB_BYTES = 2 << 30  # what client/app.py expands to


def _zip_bomb(fab: bytes, name: str = "client/app.py") -> bytes:
    """``fab`` with ``name`` replaced by 2 GiB of zeros deflated to ~2 MB: one full-flush
    deflate block of 1 MiB of zeros repeated (each decodes on its own), stored by zipfile as
    raw bytes and then labelled as the deflated member it is, with its true size and CRC."""
    import zipfile
    import zlib
    from io import BytesIO

    zeros, deflate = bytes(1 << 20), zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    stream = block * (BOMB_BYTES // len(zeros)) + deflate.flush()
    crc = 0
    for _ in range(BOMB_BYTES // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    out = BytesIO()
    with zipfile.ZipFile(BytesIO(fab)) as good, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in good.infolist():
            if info.filename != name:
                bomb.writestr(info, good.read(info))
        member = zipfile.ZipInfo(name)
        with bomb.open(member, "w", force_zip64=True) as raw:
            raw.write(stream)
        member.compress_type, member.file_size, member.CRC = zipfile.ZIP_DEFLATED, BOMB_BYTES, crc
    return out.getvalue()


PEAK_SCRIPT = """
import resource, sys, tracemalloc
from pathlib import Path
import client, federation
from client.app_pin import DEFAULT_PIN, AppPin, installed_code, pin_problems
fab = Path(sys.argv[1]).read_bytes()
installed = installed_code({p.__name__: Path(p.__file__).parent for p in (client, federation)})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
problems = pin_problems(fab, AppPin.parse(DEFAULT_PIN), installed)
peak = tracemalloc.get_traced_memory()[1]
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(repr(problems)); print(peak); print(grown * 1024)
"""


def test_a_zip_bomb_bundle_is_refused_from_its_sizes_without_expanding_it(tmp_path):
    """A ~2 MB bundle whose client/app.py expands to 2 GiB (it once cost a site 2 GiB of
    memory): refused in one line, the check's peak memory far under 100 MB, in a fresh process."""
    import zipfile
    from io import BytesIO

    bomb = _zip_bomb(build_fab_from_disk(_bundle(tmp_path / "bomb")))
    with zipfile.ZipFile(BytesIO(bomb)) as archive:  # control: it is the bomb it claims to be
        assert archive.getinfo("client/app.py").file_size == BOMB_BYTES
        with archive.open("client/app.py") as member:
            assert member.read(3 << 20) == bytes(3 << 20)
    assert len(bomb) < 3 << 20
    path = tmp_path / "bomb.fab"
    path.write_bytes(bomb)

    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True, timeout=300, cwd=REPO
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    problems, peak, grown = proc.stdout.splitlines()[-3:]
    assert problems == repr(["bundle file client/app.py differs from the installed code"])
    assert int(peak) < 100 << 20 and int(grown) < 100 << 20, (peak, grown)


def test_a_bundle_metadata_file_that_declares_too_much_is_refused_unread(tmp_path):
    bare = build_fab_from_disk(write_app_folder(tmp_path / "bare", {"rounds": 1}))
    bomb = _zip_bomb(bare, "pyproject.toml")
    assert pin_problems(bomb, AppPin.parse(DEFAULT_PIN), _installed()) == [
        f"bundle pyproject.toml declares {BOMB_BYTES} bytes (more than 1048576), refused unread"
    ]


@pytest.mark.slow
def test_flower_own_loader_would_run_the_modified_bundle(tmp_path):
    """Control: what ``flwr-clientapp`` does (install the FAB, load its ClientApp) imports the
    coordinator's client/app.py and runs its handlers: the marker appears."""
    marker = tmp_path / "marker"
    fab = tmp_path / "app.fab"
    fab.write_bytes(build_fab_from_disk(_bundle(tmp_path / "attack", marker=marker)))
    script = f"""
import hashlib, pathlib
from flwr.cli.install import install_from_fab
from flwr.clientapp.utils import get_load_client_app_fn
content = pathlib.Path({str(fab)!r}).read_bytes()
install_from_fab(content, skip_prompt=True)
app = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)(
    "{DEFAULT_PIN}", "0.1.0", hashlib.sha256(content).hexdigest())
try:
    app._registered_funcs["train.default"](None, None)
except Exception:
    pass
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "FLWR_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO),
        "FLWR_TELEMETRY_ENABLED": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.read_text().splitlines() == ["imported", "handled train.default"]


# ---- end to end: a deployed site (entrypoint, TLS SuperLink, 2 nodes) -----------------------


@pytest.fixture(scope="module")
def network(deployment_network):
    """The shared walk-through network (tests/conftest.py): cleveland and hungary through the
    entrypoint, plus sites that refuse every run for their own reasons (a guarded node, and
    a capped one once tests/integration/test_deployment.py has run)."""
    return deployment_network


def _submit(net: Network, folder: Path) -> tuple[str, str]:
    """``flwr run FOLDER --stream`` as the coordinator; (run status, streamed output)."""
    home = net.coordinator_home()
    proc = run_flwr(home, "run", str(folder), CONNECTION, "--stream", timeout=600)
    match = STARTED.search(proc.stdout)
    assert match, proc.stdout[-2000:] + proc.stderr[-2000:]
    return run_status(home, int(match.group(1)))[0], proc.stdout + proc.stderr


@pytest.mark.slow
def test_site_refuses_a_bundle_with_modified_client_code(network, tmp_path):
    """The modified bundle's code never runs at the site (no marker), and each
    site refused the run with the category, in its reply and in its own log."""
    marker = tmp_path / "marker"
    # The shared network's node logs hold earlier tests' runs: read only what this one adds.
    before = {site: len(network.nodes[site].output()) for site in SITES}
    status, output = _submit(network, _bundle(tmp_path, marker=marker))
    assert status != "finished:completed"
    assert not marker.exists()
    assert NOT_PINNED in output  # the sites' error replies, as the ServerApp saw them
    for site in SITES:
        log = network.nodes[site].output()[before[site] :]
        assert f"{NOT_PINNED}: bundle file client/app.py differs" in log
        assert "Traceback" not in log


@pytest.mark.slow
def test_unmodified_bundle_trains_at_the_same_sites(network, tmp_path):
    """Control: the same bundle with this repo's client/ unchanged trains one round."""
    status, output = _submit(network, _bundle(tmp_path))
    assert status == "finished:completed", output[-3000:]
    (record,) = read_rounds(tmp_path / "run")
    assert set(record["train"]) == set(SITES)
    ours = {network.node_ids[site] for site in SITES}
    assert not [f for f in record["failures"] if f["node"] in ours]  # only the refusing sites
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["metrics"]["sites"]) == set(SITES)


@pytest.mark.slow
def test_entrypoint_stops_the_node_when_the_runner_exits(tmp_path):
    """Supervision: a bad pin stops the runner with one clear line; the entrypoint then
    stops flower-supernode too and exits non-zero (no node runs without its runner)."""
    net = Network(tmp_path)
    net.make_pki()
    env = net.node_env("va", LHSFED_APP_PIN="not-a-pin", LHSFED_BIN=str(BIN))
    proc = subprocess.run(
        ["bash", str(DOCKER / "entrypoint-supernode.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 64
    assert "LHSFED_APP_PIN='not-a-pin': give PUBLISHER/NAME" in proc.stderr
    assert "node or runner exited (status 64); both stopped" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
