"""docker/: compose.yaml and Dockerfiles reference only what exists; entrypoints refuse bad input."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from federation.security import pki
from tests.helpers.deployment_net import BIN, DOCKER, REPO, base_env

COMPOSE = DOCKER / "compose.yaml"
SITE_ENV = ("LHSFED_CA_CERT", "LHSFED_NODE_KEY", "LHSFED_DATA_PATH")


def _documented_vars(script: Path) -> set[str]:
    return set(re.findall(r"LHSFED_[A-Z_]+", script.read_text()))


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


def test_compose_references_exist(tmp_path):
    compose = yaml.safe_load(COMPOSE.read_text())
    _make_demo_pki(tmp_path)
    declared_volumes = set(compose["volumes"])
    entrypoints = {"superlink": DOCKER / "entrypoint-superlink.sh"}
    assert set(compose["services"]) == {"superlink", "cleveland", "hungary", "switzerland"}
    for name, service in compose["services"].items():
        script = entrypoints.get(name, DOCKER / "entrypoint-supernode.sh")
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
        env = service["environment"]
        assert set(env) <= _documented_vars(script), f"{name}: undocumented env var"
        mounts = {}
        for volume in service["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert _host_path(source, tmp_path).exists(), f"{name}: {source} missing"
                mounts[target] = _host_path(source, tmp_path)
            else:
                assert source in declared_volumes, f"{name}: volume {source} not declared"
                mounts[target] = None
        if name == "superlink":
            assert mounts[env["LHSFED_TLS_DIR"]] is not None
            continue
        for var in ("LHSFED_SUPERLINK", "LHSFED_SITE_NAME", *SITE_ENV):
            assert env.get(var), f"{name}: required {var} not set"
        for var in SITE_ENV:  # each path lies in a mount whose host file exists
            target = next(t for t in mounts if env[var] == t or env[var].startswith(t + "/"))
            host = (
                mounts[target] / Path(env[var]).relative_to(target) if env[var] != target else mounts[target]
            )
            assert host.is_file(), f"{name}: {var}={env[var]} -> {host} missing"
        ledger_mount = next(t for t in mounts if env["LHSFED_LEDGER_PATH"].startswith(t + "/"))
        assert mounts[ledger_mount] is None  # the ledger lives on a named volume
        assert mounts[next(t for t in mounts if env["LHSFED_DATA_PATH"].startswith(t))]
        assert any(v.endswith(":ro") for v in service["volumes"] if v.split(":")[1] == "/data")


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
