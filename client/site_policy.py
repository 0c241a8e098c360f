"""The site's own privacy policy: everything it enforces whatever the coordinator sends.

A node is deployed unless its node config says ``lhsfed-mode=simulation``, which only the
simulation launchers set (``federation.coordinator.inprocess`` / ``.simulation``): a node
config without it gets no simulation default, however little else it holds.

In deployment hospital IT sets it in the SuperNode's node config; ``max-epsilon``,
``ledger-path``, ``spec-path`` and ``node-key`` are required there (the entrypoint refuses to
start a node without them, and the ClientApp refuses every message). In simulation, where the
launcher plays every hospital, the same options come from the launching process's environment
(``LHSFED_<OPTION>``: one value for every site, e.g. ``LHSFED_MAX_EPSILON=2``, or per site,
``LHSFED_MAX_EPSILON=hungary=2,va=4``) with the simulation defaults below; the launcher writes
what each simulated site enforced to ``site_policy.json`` in the run folder.

The run config cannot change any of this: the site's δ is the only δ of its accounting, its
accountant the only accountant, its ledger the only record of what it spent.

A site that sets no δ (``delta`` absent or ``auto``; in simulation ``LHSFED_DELTA`` unset)
accounts at one derived from its own training rows, :func:`derived_delta`:
min(1e-5, 1/(10·n_train)) rounded down to two significant digits, so at most a tenth of the
1/n at which a mechanism could publish one patient's row outright and still claim (ε, δ)-DP.
A δ the site sets explicitly is its own, and a run is refused if it is above 1/(10·n_train).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from decimal import ROUND_DOWN, Context
from pathlib import Path

from federation.core.errors import ConfigError, collect_then_raise
from federation.core.run_layout import LEDGERS, SITE_POLICY

LEDGER_PATH = "ledger-path"
MAX_EPSILON = "max-epsilon"
DELTA = "delta"
SPEC_PATH = "spec-path"
NODE_KEY = "node-key"
NODE_STATE = "node-state"  # where the node remembers its ledger's head; default beside its key
REQUIRED_IN_DEPLOYMENT = (MAX_EPSILON, LEDGER_PATH, SPEC_PATH, NODE_KEY)
DELTA_AUTO = "auto"  # the node config's way of saying: derive δ from my rows (the default)
# The largest δ a site that sets none accounts at (smaller for more than 10,000 training rows).
MAX_DERIVED_DELTA = 1e-5
MODE = "lhsfed-mode"  # node-config key: "simulation" (set by the simulation launchers) or absent
SIMULATION = "simulation"
MODES = (SIMULATION, "deployment")
LEDGER_DIR_ENV = "LHSFED_LEDGER_DIR"
# A simulated site's data folder (client.site reads it; the launcher exports it to every worker).
DATA_DIR_ENV = "LHSFED_SITE_DATA_DIR"
SITE_SPEC_ENV = "LHSFED_SITE_SPEC"
LEDGER_SUFFIX = ".sqlite"
ACCOUNTANTS = ("rdp", "prv")
# A simulated site's cap when LHSFED_MAX_EPSILON is unset (deployment has no default).
SIMULATION_MAX_EPSILON = 10.0


@dataclass(frozen=True)
class SitePolicy:
    """What this site allows (numbers the site sets; defaults are deployment's)."""

    ledger_path: Path
    max_epsilon: float
    node_key: Path
    delta: float | None = None  # None: derived from the training rows (delta_for)
    spec_path: Path | None = None  # None (simulation only): the run's spec is the site's
    node_state: Path | None = None
    require_dp: bool = True
    min_noise_multiplier: float = 0.0
    max_rounds: int = 100
    max_local_epochs: int = 10
    accountant: str = "rdp"
    min_eval_rows: int = 50
    min_cell_size: int = 10
    # Issue P: the share of a run's ε target its releases (evaluation each round, personalize)
    # spend, and the ε of one query outside a training run (compare). Chosen by measurement:
    # docs/privacy.md, 'What each release costs'.
    release_epsilon_share: float = 0.5
    query_epsilon: float = 0.5

    def delta_for(self, n_train: int) -> float:
        """The δ this site accounts at with ``n_train`` training rows: its own, else derived."""
        return self.delta if self.delta is not None else derived_delta(n_train)

    def to_json(self) -> dict:
        plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        return plain | ({"delta": DELTA_AUTO} if self.delta is None else {})


def derived_delta(n_train: int) -> float:
    """min(1e-5, 1/(10·n_train)) rounded down to two significant digits (exact decimals)."""
    bound = Context(prec=2, rounding=ROUND_DOWN).divide(1, 10 * max(int(n_train), 1))
    return min(MAX_DERIVED_DELTA, float(bound))


# node-config name -> (field, parser); parsers return (value, problem)
def _positive(cast, upper: float = math.inf):
    def parse(raw):
        try:
            value = cast(raw)
        except (TypeError, ValueError):
            return None, f"must be a number (got {raw!r})"
        if isinstance(raw, bool) or not 0 < value < upper:
            return None, f"must be in (0, {upper:g}) (got {raw!r})"
        return value, None

    return parse


def _non_negative(raw):
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None, f"must be a number >= 0 (got {raw!r})"
    return (value, None) if value >= 0 else (None, f"must be >= 0 (got {raw!r})")


def _flag(raw):
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes"):
        return True, None
    if text in ("false", "0", "no"):
        return False, None
    return None, f"must be true or false (got {raw!r})"


def _accountant(raw):
    return (
        (str(raw), None) if str(raw) in ACCOUNTANTS else (None, f"must be one of {ACCOUNTANTS} (got {raw!r})")
    )


def _delta(raw):
    if str(raw).strip().lower() == DELTA_AUTO:
        return None, None
    return _positive(float, 1.0)(raw)


def _path(raw):
    return (Path(str(raw)), None) if str(raw).strip() else (None, "must be a file path")


OPTIONS = {
    LEDGER_PATH: ("ledger_path", _path),
    MAX_EPSILON: ("max_epsilon", _positive(float)),
    DELTA: ("delta", _delta),
    NODE_KEY: ("node_key", _path),
    SPEC_PATH: ("spec_path", _path),
    NODE_STATE: ("node_state", _path),
    "require-dp": ("require_dp", _flag),
    "min-noise-multiplier": ("min_noise_multiplier", _non_negative),
    "max-rounds": ("max_rounds", _positive(int)),
    "max-local-epochs": ("max_local_epochs", _positive(int)),
    "accountant": ("accountant", _accountant),
    "min-eval-rows": ("min_eval_rows", _positive(int)),
    "min-cell-size": ("min_cell_size", _positive(int)),
    "release-epsilon-share": ("release_epsilon_share", _positive(float, 1.0)),
    "query-epsilon": ("query_epsilon", _positive(float)),
}
SIMULATION_DEFAULTS = {
    MAX_EPSILON: SIMULATION_MAX_EPSILON,
    "require-dp": False,
    "min-eval-rows": 20,
    "min-cell-size": 2,
}


def env_name(option: str) -> str:
    return "LHSFED_" + option.upper().replace("-", "_")


def _per_site(raw: str, site: str, name: str) -> str | None:
    """The value for ``site`` from ``"2.0"`` or ``"a=1,b=2"`` (None if the site is not named)."""
    if "=" not in raw:
        return raw.strip() or None
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(
                f"{name}={raw!r}: item {part!r} is not SITE=VALUE; write e.g. 'hungary=2.0,va=4'"
            )
        if key.strip() == site:
            return value.strip()
    return None


def _parse(raw: dict[str, tuple[object, str]]) -> SitePolicy:
    """Typed policy from {option: (raw value, where it came from)}, every problem at once."""
    problems, values = [], {}
    for option, (value, source) in raw.items():
        field_name, parse = OPTIONS[option]
        parsed, problem = parse(value)
        if problem:
            problems.append(f"{source} {problem}")
        values[field_name] = parsed
    collect_then_raise(problems, ConfigError)
    return SitePolicy(**values)


def deployed_policy(node_config: dict) -> SitePolicy:
    """A deployed node's policy: the required options must all be in its node config."""
    missing = [k for k in REQUIRED_IN_DEPLOYMENT if k not in node_config]
    if missing:
        raise ConfigError(
            f"node config lacks {', '.join(repr(k) for k in missing)}: the site's "
            "privacy policy is mandatory (docs/deployment.md, 'Site policy')"
        )
    return _parse({k: (v, f"node config {k!r}") for k, v in node_config.items() if k in OPTIONS})


def simulated_policy(site: str, *, run_folder: Path) -> SitePolicy:
    """A simulated site's policy: LHSFED_<OPTION> variables, else the simulation defaults.

    Its ledger (and the key and state beside it) in the run ``run_folder``: where the launcher
    recorded it for that run (its ``site_policy.json``: the task's ledgers shared by its
    campaigns unless the run asked for fresh ones, federation.coordinator.site_ledgers), so
    a later query about that run (compare, drift) finds what the site kept for it; a run not
    recorded yet: ``LHSFED_LEDGER_DIR``, else the run folder's ``ledgers/``.
    """
    folder = _recorded_ledgers(Path(run_folder), site) or os.environ.get(LEDGER_DIR_ENV)
    ledgers = Path(folder) if folder else Path(run_folder) / LEDGERS
    raw: dict[str, tuple[object, str]] = {
        LEDGER_PATH: (ledgers / f"{site}{LEDGER_SUFFIX}", LEDGER_DIR_ENV),
        NODE_KEY: (ledgers / f"{site}.key", LEDGER_DIR_ENV),
    }
    if os.environ.get(SITE_SPEC_ENV):
        raw[SPEC_PATH] = (os.environ[SITE_SPEC_ENV], SITE_SPEC_ENV)
    for option in OPTIONS:
        if option in (LEDGER_PATH, NODE_KEY, SPEC_PATH, NODE_STATE):
            continue
        name = env_name(option)
        value = _per_site(os.environ[name], site, name) if os.environ.get(name) else None
        if value is not None:
            raw[option] = (value, f"{name} (site {site})")
        elif option in SIMULATION_DEFAULTS:
            raw[option] = (SIMULATION_DEFAULTS[option], "simulation default")
    return _parse(raw)


def _recorded_ledgers(run_folder: Path, site: str) -> Path | None:
    """The ledger folder the launcher recorded for ``site`` in ``run_folder/site_policy.json``
    (None: no record; a record that does not parse is no record, as before the file existed)."""
    try:
        recorded = json.loads((run_folder / SITE_POLICY).read_text())[site]["ledger_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(str(recorded)).parent


# The node config Flower's own simulation engine gives every node (``flwr run .`` on a
# ``--simulation`` SuperLink), and nothing else: no SuperNode a hospital starts has it.
FLOWER_SIMULATION_NODE_CONFIG = frozenset({"partition-id", "num-partitions"})


def is_deployed(node_config: dict) -> bool:
    """Every node is a deployed hospital unless the simulation launcher marked it
    (``lhsfed-mode=simulation``) or Flower's simulation engine made it (its node config is
    exactly ``partition-id`` and ``num-partitions``); an unknown mode is a configuration error."""
    if MODE not in node_config and set(node_config) == FLOWER_SIMULATION_NODE_CONFIG:
        return False
    mode = str(node_config.get(MODE, "deployment"))
    if mode not in MODES:
        raise ConfigError(f"node config {MODE!r}={mode!r}: leave it out (deployment) or use one of {MODES}")
    return mode != SIMULATION


def site_policy(node_config: dict, site: str, *, run_folder: Path) -> SitePolicy:
    """This node's policy: its node config when deployed, the launcher's when simulated."""
    if is_deployed(node_config):
        return deployed_policy(node_config)
    return simulated_policy(site, run_folder=run_folder)
