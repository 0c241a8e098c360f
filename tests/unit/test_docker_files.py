"""docker/: compose.yaml and Dockerfiles reference only what exists; entrypoints refuse bad input."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from client.site_policy import REQUIRED_IN_DEPLOYMENT
from federation.security import pki
from tests.helpers.deployment_net import BIN, DOCKER, REPO, base_env

COMPOSE = DOCKER / "compose.yaml"
SUPERNODE_ENTRYPOINT = DOCKER / "entrypoint-supernode.sh"
# Files a hospital's node reads, and where it writes: a folder per variable (TMPDIR is one).
READS = ("LHSFED_CA_CERT", "LHSFED_NODE_KEY", "LHSFED_DATA_PATH", "LHSFED_SPEC_PATH")
WRITES_BESIDE = ("LHSFED_LEDGER_PATH", "LHSFED_NODE_STATE")


def _documented_vars(script: Path) -> set[str]:
    return set(re.findall(r"\b(?:LHSFED_[A-Z_]+|TMPDIR|FLWR_HOME)\b", script.read_text()))


def _entrypoint_required() -> set[str]:
    """The variables the SuperNode entrypoint refuses to start without (its ``required``)."""
    (names,) = re.findall(r"^required=\(([^)]*)\)", SUPERNODE_ENTRYPOINT.read_text(), re.M)
    return set(names.split())


def hospital_required() -> set[str]:
    """What every hospital service must set: the entrypoint's own list, every node-config key
    the site policy requires in deployment (``LHSFED_`` + its name), the node state (the key
    is mounted read-only) and TMPDIR (the root filesystem is read-only)."""
    policy = {"LHSFED_" + key.upper().replace("-", "_") for key in REQUIRED_IN_DEPLOYMENT}
    return _entrypoint_required() | policy | {"LHSFED_NODE_STATE", "TMPDIR"}


def _make_demo_pki(root: Path) -> None:
    """What the compose header tells hospital IT and the coordinator to run, under ``root``."""
    pki.create_ca(root)
    pki.create_server_cert(root, ["superlink", "localhost"])
    for site in ("cleveland", "hungary", "switzerland"):
        pki.create_node_key(site, root / "sites")


def _host_path(source: str, pki_root: Path) -> Path:
    """A bind-mount source on the host; ./pki is generated, everything else is in the repo."""
    rel = Path(source)
    if rel.parts[:2] == (".", "pki") or rel.parts[0] == "pki":
        return pki_root.joinpath(*rel.parts[rel.parts.index("pki") + 1 :])
    return (DOCKER / rel).resolve()


def _image_copies(service: dict) -> dict[str, Path]:
    """Where the service's Dockerfile COPYs each repository path: container path -> source."""
    text = (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).read_text()
    return {dest.rstrip("/"): REPO / src for src, dest in re.findall(r"^COPY\s+(\S+)\s+(\S+)$", text, re.M)}


@dataclass
class Mount:
    source: str
    target: str
    host: Path | None  # None: a named volume
    read_only: bool


def _mounts(service: dict, pki_root: Path, declared: set[str]) -> list[Mount]:
    mounts = []
    for volume in service["volumes"]:
        source, target, *options = volume.split(":")
        if source.startswith("."):
            host = _host_path(source, pki_root)
            assert host.exists(), f"{source} missing"
        else:
            assert source in declared, f"volume {source} not declared"
            host = None
        mounts.append(Mount(source, target, host, "ro" in options))
    return mounts


def _holding(mounts: list[Mount], path: str) -> Mount | None:
    """The mount a container path lies in (the deepest, as the container sees it)."""
    inside = [m for m in mounts if path == m.target or path.startswith(m.target + "/")]
    return max(inside, key=lambda m: len(m.target), default=None)


def _host_file(mount: Mount, path: str) -> Path:
    return mount.host if path == mount.target else mount.host / Path(path).relative_to(mount.target)


def test_compose_references_exist(tmp_path):
    compose = yaml.safe_load(COMPOSE.read_text())
    _make_demo_pki(tmp_path)
    assert set(compose["services"]) == {"superlink", "cleveland", "hungary", "switzerland"}
    for name, service in compose["services"].items():
        script = DOCKER / ("entrypoint-superlink.sh" if name == "superlink" else "entrypoint-supernode.sh")
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
        assert set(service["environment"]) <= _documented_vars(script), f"{name}: undocumented env var"
        mounts = _mounts(service, tmp_path, set(compose["volumes"]))
        if name == "superlink":
            assert _holding(mounts, service["environment"]["LHSFED_TLS_DIR"]).host is not None


def test_every_hospital_sets_every_required_variable_and_mounts_every_path(tmp_path):
    """The node refuses to start without each required variable, a file it reads or a folder
    it writes: every hospital in compose.yaml sets them all, each file it reads lies in a
    mount (or the image) holding it, and each folder it writes is on a writable volume."""
    compose = yaml.safe_load(COMPOSE.read_text())
    required = hospital_required()
    assert {"LHSFED_SPEC_PATH", "LHSFED_NODE_KEY", "LHSFED_LEDGER_PATH"} <= required
    pki_root = tmp_path
    _make_demo_pki(pki_root)
    hospitals = {n: s for n, s in compose["services"].items() if n != "superlink"}
    for name, service in hospitals.items():
        env = service["environment"]
        mounts = _mounts(service, pki_root, set(compose["volumes"]))
        assert required <= {k for k, v in env.items() if str(v).strip()}, f"{name}: {required - set(env)} not set"
        for var in READS:
            mount, path = _holding(mounts, env[var]), env[var]
            if mount is None:  # in the image: a file the Dockerfile copies from the repository
                dest = next(d for d in _image_copies(service) if path.startswith(d + "/"))
                host = _image_copies(service)[dest] / Path(path).relative_to(dest)
            else:
                host = _host_file(mount, path)
            assert host.is_file(), f"{name}: {var}={path} -> {host} missing"
        for var in WRITES_BESIDE:
            mount = _holding(mounts, str(Path(env[var]).parent))
            assert mount and mount.host is None and not mount.read_only, f"{name}: {var} not on a writable volume"
        ledger, state = (_holding(mounts, str(Path(env[v]).parent)) for v in WRITES_BESIDE)
        assert ledger.source != state.source  # a rolled-back ledger volume cannot take the state with it
        assert _holding(mounts, env["LHSFED_NODE_KEY"]).read_only
        assert _holding(mounts, env["LHSFED_DATA_PATH"]).read_only
        assert env["TMPDIR"] in service["tmpfs"]


def test_every_container_runs_read_only_with_a_tmpfs_for_scratch():
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"] and service["environment"]["TMPDIR"] == "/tmp", name
        assert service["restart"] == "unless-stopped", name


def test_dockerfile_copy_sources_exist():
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        assert re.search(r"^FROM flwr/(superlink|supernode):1\.41\.0$", text, re.M), dockerfile
        for sources in re.findall(r"^COPY\s+(.+)\s+\S+$", text, re.M):
            for source in sources.split():
                assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} missing"


def _entrypoint(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DOCKER / "entrypoint-supernode.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_entrypoint_names_a_missing_variable(tmp_path):
    proc = _entrypoint(base_env(tmp_path))
    assert proc.returncode == 64
    assert "LHSFED_SUPERLINK is not set" in proc.stderr


def test_entrypoint_runs_site_check_before_the_node(tmp_path):
    pki.create_ca(tmp_path)
    pki.create_node_key("va", tmp_path)
    bad = tmp_path / "va.csv"
    bad.write_text("63,1,1,145,233,1,2,150,0,2.3,3,0,6,0\n")
    env = {
        **base_env(tmp_path),
        "LHSFED_SUPERLINK": "127.0.0.1:9",
        "LHSFED_BIN": str(BIN),
        "LHSFED_CA_CERT": str(tmp_path / "ca.pem"),
        "LHSFED_NODE_KEY": str(tmp_path / "va.key"),
        "LHSFED_DATA_PATH": str(bad),
        "LHSFED_SITE_NAME": "va",
        "LHSFED_LEDGER_PATH": str(tmp_path / "ledger" / "ledger.sqlite"),
        "LHSFED_MAX_EPSILON": "3",
        "LHSFED_DELTA": "1e-5",
    }
    proc = _entrypoint(env)
    assert proc.returncode == 64
    assert "fewer than the minimum 20" in proc.stdout
    assert "site check failed" in proc.stderr and "Starting Flower SuperNode" not in proc.stdout


@pytest.mark.parametrize("missing", ["LHSFED_MAX_EPSILON", "LHSFED_DELTA", "LHSFED_LEDGER_PATH"])
def test_entrypoint_refuses_to_start_without_the_sites_privacy_policy(tmp_path, missing):
    """The site's cap, δ and ledger are mandatory in deployment: the entrypoint refuses without."""
    pki.create_node_key("va", tmp_path)
    (tmp_path / "ca.pem").write_text("x")
    env = {
        **base_env(tmp_path),
        "LHSFED_SUPERLINK": "127.0.0.1:9",
        "LHSFED_BIN": str(BIN),
        "LHSFED_CA_CERT": str(tmp_path / "ca.pem"),
        "LHSFED_NODE_KEY": str(tmp_path / "va.key"),
        "LHSFED_DATA_PATH": str(tmp_path / "va.csv"),
        "LHSFED_SITE_NAME": "va",
        "LHSFED_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "LHSFED_MAX_EPSILON": "3",
        "LHSFED_DELTA": "1e-5",
    }
    del env[missing]
    proc = _entrypoint(env)
    assert proc.returncode == 64 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"entrypoint-supernode: {missing} is not set: the site's privacy "
        "policy is mandatory (see docs/deployment.md)"
    )


def _docs_docker_run(image: str) -> str:
    """The docs' `docker run` form for ``image`` (continuation lines joined)."""
    text = (REPO / "docs" / "deployment.md").read_text().replace("\\\n", " ")
    (command,) = [line for line in text.splitlines() if line.startswith("docker run") and image in line]
    return command


def test_the_docs_docker_run_form_writes_only_to_writable_volumes():
    """The docs' SuperNode form: every required variable set, the node state on a writable
    named volume apart from the ledger's (not beside the read-only key), read-only root with
    TMPDIR on a tmpfs."""
    command = _docs_docker_run("lhsfed-supernode")
    env = {k: v.strip('"') for k, v in re.findall(r"-e (\w+)=(\S+)", command)}
    volumes = {t: (s, o) for s, t, o in re.findall(r'-v "?([^\s:"]+):([^\s:"]+):?(ro)?"?', command)}

    assert hospital_required() <= set(env)
    for var in WRITES_BESIDE:
        folder = str(Path(env[var]).parent)
        source, options = volumes[folder]
        assert not source.startswith(("$", "/", ".")) and options != "ro", f"{var}: {folder} not a writable volume"
    assert volumes[str(Path(env["LHSFED_NODE_STATE"]).parent)] != volumes[str(Path(env["LHSFED_LEDGER_PATH"]).parent)]
    assert volumes[env["LHSFED_NODE_KEY"]][1] == "ro"  # the key: a read-only file mount
    assert "--read-only" in command and "--tmpfs /tmp" in command and env["TMPDIR"] == "/tmp"
    superlink = _docs_docker_run("lhsfed-superlink")
    assert "--read-only" in superlink and "--tmpfs /tmp" in superlink
