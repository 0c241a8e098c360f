"""The site's own privacy policy: where its ledger lives, its ε cap and its δ.

These are set by the hospital, never by the coordinator: in deployment by hospital IT in the
SuperNode's node config (``ledger-path``, ``max-epsilon``, ``delta``); in simulation, where the
launcher plays every hospital, by environment variables of the launching process:

- ``LHSFED_LEDGER_DIR``: folder of the ledgers, one ``<site>.sqlite`` per site (default:
  ``<run folder>/ledgers``);
- ``LHSFED_MAX_EPSILON`` and ``LHSFED_DELTA``: either one number for every site (``2.0``) or
  per site (``hungary=2.0,va=4``); a site not named has no cap (δ: the run's).

The run config cannot change any of this.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from federation.errors import ConfigError, collect_then_raise

LEDGER_PATH = "ledger-path"
MAX_EPSILON = "max-epsilon"
DELTA = "delta"
LEDGER_DIR_ENV = "LHSFED_LEDGER_DIR"
MAX_EPSILON_ENV = "LHSFED_MAX_EPSILON"
DELTA_ENV = "LHSFED_DELTA"
LEDGER_SUFFIX = ".sqlite"


@dataclass(frozen=True)
class SitePolicy:
    """What this site allows: ``max_epsilon`` None = no cap; ``delta`` None = the run's δ."""

    ledger_path: Path
    max_epsilon: float | None = None
    delta: float | None = None


def _per_site(raw: str, site: str, name: str) -> str | None:
    """The value for ``site`` from ``"2.0"`` or ``"a=1,b=2"`` (None if the site is not named)."""
    if "=" not in raw:
        return raw.strip() or None
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"{name}={raw!r}: item {part!r} is not SITE=VALUE; write e.g. "
                              f"'hungary=2.0,va=4'")
        if key.strip() == site:
            return value.strip()
    return None


def _number(raw: object, source: str, problems: list[str], *, upper: float = math.inf
            ) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        problems.append(f"{source} must be a number (got {raw!r})")
        return None
    if not 0 < value < upper:
        problems.append(f"{source} must be in (0, {upper}) (got {value})")
        return None
    return value


def site_policy(node_config: dict, site: str, *, run_folder: Path) -> SitePolicy:
    """The policy for ``site``: node config first, else (simulation) the environment."""
    problems: list[str] = []
    if LEDGER_PATH in node_config:
        path = Path(str(node_config[LEDGER_PATH]))
    else:
        folder = os.environ.get(LEDGER_DIR_ENV)
        path = (Path(folder) if folder else run_folder / "ledgers") / f"{site}{LEDGER_SUFFIX}"

    def setting(key: str, env: str) -> tuple[object, str]:
        if key in node_config:
            return node_config[key], f"node config {key!r}"
        raw = os.environ.get(env)
        return (_per_site(raw, site, env) if raw else None), f"{env} (site {site})"

    cap = _number(*setting(MAX_EPSILON, MAX_EPSILON_ENV), problems)
    delta = _number(*setting(DELTA, DELTA_ENV), problems, upper=1.0)
    collect_then_raise(problems, ConfigError)
    return SitePolicy(ledger_path=path, max_epsilon=cap, delta=delta)
