"""A deployed hospital's node, in this process: its own key, ledger, spec and policy in a node
config, exactly the keys docker/entrypoint-supernode.sh writes; messages from a coordinator
built as the ServerApp builds them. For tests of what the site enforces against the run config.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.app import app as client_app
from federation.cli.site import DATA_CONFIGS, load_dataset_spec
from federation.coordinator.inprocess import InProcessGrid, run_config_for
from federation.core import wire
from federation.core.data import embedded_dir
from federation.core.model import build_model
from federation.core.settings import RunSettings, model_spec
from federation.security import pki

NODE = 11
SPEC_FILE = DATA_CONFIGS / "uci_heart.yaml"


def site_data_file(site: str = "cleveland") -> Path:
    spec = load_dataset_spec("uci_heart")
    return embedded_dir(spec) / spec.sites[site]


def deployed_node(folder: Path, site: str = "cleveland", **policy) -> dict:
    """Node config of a deployed site under ``folder`` (policy keys as node-config names)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / f"{site}.key"
    if not key.exists():
        pki.create_node_key(site, folder)
    config = {
        "data-path": str(policy.pop("data_path", site_data_file(site))),
        "site-name": site,
        "ledger-path": str(folder / "ledger.sqlite"),
        "spec-path": str(SPEC_FILE),
        "node-key": str(key),
        "max-epsilon": 5.0,
        "delta": 1e-5,
    }
    config.update({k.replace("_", "-"): v for k, v in policy.items()})
    return config


def run_config(tmp: Path, *overrides: str) -> dict:
    return run_config_for(list(overrides), tmp / "run")


def initial_arrays(config: dict) -> ArrayRecord:
    settings = RunSettings.from_run_config(config)
    return ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())


def message(kind: str, arrays: ArrayRecord | None, server_round: int = 1, **config) -> Message:
    """A coordinator's message (``kind``: train, evaluate, query) as the ServerApp sends it."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    content = RecordDict({wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: server_round, **config})})
    if arrays is not None:
        content[wire.ARRAYS] = arrays
    return Message(content, dst_node_id=NODE, message_type=kind)


def send(node_config: dict, run_cfg: dict, *messages: Message) -> list[Message]:
    """Deliver messages to the real ClientApp of a node (its Context kept across them)."""
    with InProcessGrid(client_app, run_cfg, node_configs={NODE: node_config}) as grid:
        return grid.send_and_receive(list(messages))
