"""``federation.ray_address``: the simulated sites run on an existing Ray cluster.

Flower's simulation runtime starts a Ray of its own on this machine unless Ray is already
initialised; with ``federation.ray_address=HEAD:PORT`` the launcher connects this process to
that cluster first (as a driver: it must run on one of the cluster's nodes), so the site
actors are placed on every node with free CPUs (``federation.client_cpus`` each).

An actor inherits the environment of the ``ray start`` that started its node, not this
process's: the simulated sites' policy and folders (``LHSFED_*``: data folder, ledgers, caps,
δ) reach them only through the job's runtime environment. So every ``LHSFED_*`` variable of
this process is sent with the job, and every policy variable it does not set is sent empty
(unset, to the sites), so that one set where a node was started cannot change the policy of
the sites that node happens to run. Recipe and caveats: docs/scale.md, "Simulation on a Ray
cluster".
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from client.site_policy import DATA_DIR_ENV, LEDGER_DIR_ENV, OPTIONS, SITE_SPEC_ENV, env_name
from federation.core.errors import ConfigError

KEY = "federation.ray_address"
CONNECT_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection in this long is refused
# Every variable a simulated site's policy or folders are read from (client.site_policy, client.site).
POLICY_VARIABLES = (*(env_name(option) for option in OPTIONS), LEDGER_DIR_ENV, SITE_SPEC_ENV, DATA_DIR_ENV)
# The launcher's quiet settings (federation.coordinator.launcher.quiet_libraries), for the actors too.
QUIET_VARIABLES = ("PYTHONWARNINGS", "FLWR_TELEMETRY_ENABLED")
RECIPE = "docs/scale.md, 'Simulation on a Ray cluster'"


def head_address(value: object) -> tuple[str, int] | None:
    """``federation.ray_address`` as (host, port); None (or empty): start Ray on this machine."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if "://" in text or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{KEY}={value!r} is not HOST:PORT; give the address and --port of the cluster's "
            f"`ray start --head` (e.g. {KEY}=10.0.0.5:6379), or null to start Ray on this machine"
        )
    return host, int(port)


def refuse_unreachable(value: object, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One line if no Ray head answers at the address within ``timeout`` seconds: one GCS
    call (its cluster id). ``ray.init`` would instead retry for a minute and print a
    traceback, or wait for ever on a port that is not a Ray head's."""
    address = head_address(value)
    if address is None:
        return
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    host, port = address
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with grpc.insecure_channel(target) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=timeout
            )
        except grpc.RpcError as err:
            reason = err.code().name.lower().replace("_", " ") if hasattr(err, "code") else "no answer"
            raise ConfigError(
                f"{KEY}={value}: no Ray head answers there within {timeout:g} s (gRPC: {reason}); start "
                f"one with `ray start --head --port {port}` on that machine ({RECIPE}), fix the "
                f"address, or set {KEY}=null to start Ray on this machine"
            ) from None


def job_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables every site actor gets, on every node: this process's ``LHSFED_*`` (the
    policy variables it lacks as empty: unset), its quiet settings, and its import path (as
    Flower's RayBackend gives the Ray it starts)."""
    environ = dict(os.environ if environ is None else environ)
    env = {name: "" for name in POLICY_VARIABLES}
    env |= {name: value for name, value in environ.items() if name.startswith("LHSFED_")}
    env |= {name: environ[name] for name in QUIET_VARIABLES if name in environ}
    path = os.pathsep.join(sys.path)
    env["PYTHONPATH"] = f"{path}{os.pathsep}{environ['PYTHONPATH']}" if environ.get("PYTHONPATH") else path
    return env


@contextmanager
def joined(value: object) -> Iterator[None]:
    """Connected to the cluster at ``value`` inside the block (this process's ``LHSFED_*``
    as they are on entering it), disconnected afterwards (the cluster keeps running); None:
    nothing (Flower starts a local Ray)."""
    if head_address(value) is None:
        yield
        return
    refuse_unreachable(value)
    import ray

    try:
        # No num_cpus / include_dashboard: the cluster's nodes set their own (Ray refuses them).
        # WARNING: the console keeps one line per round ("Connecting to existing Ray cluster...").
        ray.init(
            address=str(value).strip(),
            runtime_env={"env_vars": job_env()},
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"{KEY}={value}: could not join that Ray cluster ({' '.join(str(err).split())[:200]}); "
            f"this machine must be one of its nodes, with the same Python, Ray and project ({RECIPE})"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()  # disconnects this driver; its actors end, the cluster stays up
