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
    copies = _copies(text)
    return {dest.rstrip("/"): REPO / src[0] for src, dest in copies if len(src) == 1 and dest != "/"}


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
        assert required <= {k for k, v in env.items() if str(v).strip()}, (
            f"{name}: {required - set(env)} not set"
        )
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
            assert mount and mount.host is None and not mount.read_only, (
                f"{name}: {var} not on a writable volume"
            )
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


IMAGES = {"supernode.Dockerfile": "flwr/supernode:1.41.0", "superlink.Dockerfile": "flwr/superlink:1.41.0"}


def _args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))


def _copies(text: str) -> list[tuple[list[str], str]]:
    """Each COPY's sources (ARG defaults substituted) and destination."""
    args = _args(text)
    found = []
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        *sources, dest = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], line).split()
        found.append((sources, dest))
    return found


def _in_image(text: str, path: str) -> Path | None:
    """The repository file a Dockerfile puts at ``path`` (a COPY into a folder), if any."""
    for sources, dest in _copies(text):
        for source in sources:
            if dest.endswith("/") and path == dest + Path(source).name:
                return REPO / source
    return None


def test_dockerfile_copy_sources_exist():
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        for sources, _ in _copies(dockerfile.read_text()):
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} missing"


@pytest.mark.parametrize(("dockerfile", "official"), IMAGES.items())
def test_images_start_from_arg_base_and_install_from_a_wheelhouse_when_given(dockerfile, official):
    text = (DOCKER / dockerfile).read_text()
    assert _args(text)["BASE"] == official  # the pinned official image by default
    assert re.search(r"^FROM \$\{BASE\}$", text, re.M)
    # The wheelhouse: a folder of the build context (ARG WHEELHOUSE), bind-mounted for the install
    # only (no wheels in a layer); with wheels there, pip uses no index at all.
    assert _args(text)["WHEELHOUSE"] == "docker/wheelhouse" and (REPO / "docker/wheelhouse").is_dir()
    assert re.search(r"^FROM scratch AS wheels\nARG WHEELHOUSE=\S+\nCOPY \$\{WHEELHOUSE\} /$", text, re.M)
    install = text[text.index("RUN --mount=type=bind,from=wheels,target=/wheelhouse") :]
    assert "export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse" in install.split("&&")[0]
    assert "torch==2.13.0" in install and "/app" in install


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_entrypoint_and_what_it_sources_are_in_the_image_side_by_side(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    (entrypoint,) = re.findall(r'^ENTRYPOINT \["([^"]+)"\]$', text, re.M)
    script = _in_image(text, entrypoint)
    assert script and script.is_file(), entrypoint
    folder = entrypoint.rsplit("/", 1)[0]
    scripts = [script]
    while scripts:  # $here/NAME: what each script runs or sources from its own folder
        for name in re.findall(r"\$here/(\w[\w.-]*)", scripts.pop().read_text()):
            assert _in_image(text, f"{folder}/{name}"), f"{dockerfile}: {folder}/{name} not copied"
            if name.endswith(".sh"):
                scripts.append(DOCKER / name)
    # The default spec (../configs/data beside the entrypoint's folder) is in the image.
    if dockerfile == "supernode.Dockerfile":
        assert folder == "/app/docker" and ("configs", "/app/configs") in [
            (s[0], d) for s, d in _copies(text)
        ]


def test_supernode_image_has_a_healthcheck_script_it_copies():
    text = (DOCKER / "supernode.Dockerfile").read_text()
    (command,) = re.findall(r'^HEALTHCHECK .*CMD \["([^"]+)"\]$', text, re.M)
    assert _in_image(text, command) == DOCKER / "healthcheck-supernode.sh"


def test_stand_in_base_matches_the_official_images_user_and_binaries():
    text = (DOCKER / "base.Dockerfile").read_text()
    assert _args(text)["DEBIAN"].startswith("debian:")
    assert "python3 python3-venv" in text  # Debian bookworm's Python 3.11
    assert "pip install --no-cache-dir flwr==1.41.0" in text
    assert "useradd --no-create-home --home-dir /app" in text and "--uid 49999 app" in text
    assert re.search(r"^ENV PATH=/python/venv/bin:\$PATH", text, re.M)  # flower-* and python, as upstream
    assert re.search(r"^USER app$", text, re.M) and "HOME=/app" in text


def test_make_targets_build_the_same_files_with_podman_or_docker():
    text = (REPO / "Makefile").read_text()
    assert "command -v podman >/dev/null 2>&1 && echo podman || echo docker" in text
    targets = {t: body for t, body in re.findall(r"^([\w-]+):[^\n]*\n((?:\t.*\n?)+)", text, re.M)}
    images = targets["images"].replace("\\\n", " ")
    for dockerfile in IMAGES:
        assert re.search(
            rf"\$\(ENGINE\) build \$\(BUILD_FLAGS\) -f docker/{dockerfile} --build-arg BASE=", images
        )
    assert "$(ENGINE) build $(BUILD_FLAGS) -f docker/base.Dockerfile" in targets["base-image"]
    # podman's flags (runc, ulimits, host network, docker format) only where the engine is podman
    assert "$(if $(findstring podman,$(ENGINE))," in text and "--format docker" in text
    standin = targets["standin-images"].replace("\\\n", " ")
    assert "SUPERNODE_BASE=$(STANDIN_BASE) SUPERLINK_BASE=$(STANDIN_BASE)" in standin
    wheelhouse = targets["wheelhouse"]
    assert "pip download" in wheelhouse and "torch==2.13.0" in wheelhouse and "flwr==1.41.0" in wheelhouse
    assert re.search(r"^SUPERNODE_BASE \?= flwr/supernode:1\.41\.0$", text, re.M)


# ----- .dockerignore: what never enters a build context -----


def _ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: a pattern matches the path or a folder above it."""

    def regex(pattern: str) -> re.Pattern:
        body = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        return re.compile(body + "(?:/.*)?")

    return any(regex(p).fullmatch(path) for p in patterns)


def test_dockerignore_keeps_keys_runs_environments_and_caches_out():
    patterns = _ignore_patterns()
    for path in (
        "docker/pki/ca.pem",
        "docker/pki/sites/cleveland.key",
        "pki/superlink.key",
        "keys/va.key",
        "signed/lhs-federation.sign.key",
        "somewhere/deep/private.pem",
        "outputs/2026-01-01/model.pt",
        "multirun/0/metrics.jsonl",
        "runs/heart-1/summary.json",
        ".venv/bin/python",
        ".git/config",
        "federation/__pycache__/x.cpython-311.pyc",
        ".pytest_cache/v/cache",
        "ledger/ledger.sqlite",
    ):
        assert _ignored(path, patterns), path
    # ... and never what the images copy, nor the wheelhouse.
    for dockerfile in [*IMAGES, "base.Dockerfile"]:
        for sources, _ in _copies((DOCKER / dockerfile).read_text()):
            for source in sources:
                assert not _ignored(source, patterns), f"{dockerfile}: COPY {source} is ignored"
    for path in (
        "docker/wheelhouse/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl",
        "configs/data/uci_heart.yaml",
    ):
        assert not _ignored(path, patterns), path


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


@pytest.mark.parametrize("delta", ["1e-5", "auto", None])
def test_entrypoint_runs_site_check_before_the_node(tmp_path, delta):
    """δ is optional (unset or auto: derived from the site's rows): the node gets to its check."""
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
        **({"LHSFED_DELTA": delta} if delta else {}),
    }
    proc = _entrypoint(env)
    assert proc.returncode == 64
    assert "fewer than the minimum 20" in proc.stdout
    assert "site check failed" in proc.stderr and "Starting Flower SuperNode" not in proc.stdout


@pytest.mark.parametrize("missing", ["LHSFED_MAX_EPSILON", "LHSFED_LEDGER_PATH"])
def test_entrypoint_refuses_to_start_without_the_sites_privacy_policy(tmp_path, missing):
    """The site's cap and ledger are mandatory in deployment: the entrypoint refuses without."""
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
        assert not source.startswith(("$", "/", ".")) and options != "ro", (
            f"{var}: {folder} not a writable volume"
        )
    assert (
        volumes[str(Path(env["LHSFED_NODE_STATE"]).parent)]
        != volumes[str(Path(env["LHSFED_LEDGER_PATH"]).parent)]
    )
    assert volumes[env["LHSFED_NODE_KEY"]][1] == "ro"  # the key: a read-only file mount
    assert "--read-only" in command and "--tmpfs /tmp" in command and env["TMPDIR"] == "/tmp"
    superlink = _docs_docker_run("lhsfed-superlink")
    assert "--read-only" in superlink and "--tmpfs /tmp" in superlink
