"""``federation.ray_address`` without a cluster: the address, and the environment every site
actor gets (tests/integration/test_ray_cluster.py runs a real two-node cluster)."""

from __future__ import annotations

import os
import time

import pytest

from federation.coordinator import ray_cluster
from federation.core.errors import ConfigError
from tests.helpers.deployment_net import free_port


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_address_starts_ray_here(value):
    assert ray_cluster.head_address(value) is None


@pytest.mark.parametrize(
    "value, expected",
    [("10.0.0.5:6379", ("10.0.0.5", 6379)), ("head:1", ("head", 1)), ("[::1]:7", ("::1", 7))],
)
def test_host_and_port(value, expected):
    assert ray_cluster.head_address(value) == expected


@pytest.mark.parametrize(
    "value", ["head", "6379", "head:", ":6379", "head:0", "head:70000", "ray://head:10001"]
)
def test_anything_else_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"federation\.ray_address=.* is not HOST:PORT"):
        ray_cluster.head_address(value)


def test_a_port_where_nothing_listens_is_refused_at_once():
    began = time.monotonic()
    with pytest.raises(ConfigError, match="no Ray head answers there") as err:
        ray_cluster.refuse_unreachable(f"127.0.0.1:{free_port()}")
    assert time.monotonic() - began < 5
    assert "ray start --head" in str(err.value) and "federation.ray_address=null" in str(err.value)


def test_the_job_carries_the_launchers_policy_and_unsets_what_it_does_not_set():
    env = ray_cluster.job_env(
        {
            "LHSFED_LEDGER_DIR": "/runs/ledgers",
            "LHSFED_SITE_CACHE_MB": "64",
            "PYTHONWARNINGS": "ignore",
            "HOME": "/x",
        }
    )
    assert env["LHSFED_LEDGER_DIR"] == "/runs/ledgers" and env["LHSFED_SITE_CACHE_MB"] == "64"
    # Not set by the launcher: sent empty (unset to the sites), whatever a node's ray start holds.
    for name in ("LHSFED_SITE_DATA_DIR", "LHSFED_MAX_EPSILON", "LHSFED_DELTA", "LHSFED_SITE_SPEC"):
        assert env[name] == "", name
    assert "LHSFED_SITE_CACHE_MB" not in ray_cluster.job_env({})  # a number: never sent empty
    assert env["PYTHONWARNINGS"] == "ignore" and "HOME" not in env
    assert env["PYTHONPATH"].split(os.pathsep)[0] == __import__("sys").path[0]


def test_an_empty_policy_variable_is_the_simulation_default(monkeypatch, tmp_path):
    from client.site_policy import SIMULATION_MAX_EPSILON, simulated_policy

    for name in ray_cluster.POLICY_VARIABLES:
        monkeypatch.setenv(name, "")
    policy = simulated_policy("hungary", run_folder=tmp_path)
    assert policy.max_epsilon == SIMULATION_MAX_EPSILON and policy.delta is None
    assert policy.ledger_path == tmp_path / "ledgers" / "hungary.sqlite"
