"""Which site this node is and where its data lies: set by whoever runs the node.

In deployment the hospital's node config names the file (``data-path``) and the site
(``site-name``), which a deployed node must have. In simulation the launcher plays every
hospital and marks its nodes (``lhsfed-mode=simulation``): node ``partition-id`` i is the
dataset's i-th site, read from ``LHSFED_SITE_DATA_DIR`` or the embedded copy.
Loaded sites stay in a byte-bounded per-process cache (``LHSFED_SITE_CACHE_MB``).
The coordinator's run config never says where a site's data is.
"""

from __future__ import annotations

import os
from pathlib import Path

from client.site_cache import ByteBoundedCache, cache_limit_bytes
from client.site_check import validated_site
from client.site_policy import DATA_DIR_ENV, MODE, SIMULATION, is_deployed
from federation.core.data import SiteData, site_file
from federation.core.dataspec import DatasetSpec
from federation.core.errors import ConfigError

DATA_PATH = "data-path"
SITE_NAME = "site-name"
PARTITION_ID = "partition-id"


def site_location(node_config: dict, spec: DatasetSpec) -> tuple[str, Path]:
    """(site name, data file) for this node."""
    if DATA_PATH in node_config:
        path = Path(str(node_config[DATA_PATH]))
        return str(node_config.get(SITE_NAME) or path.stem), path
    if is_deployed(node_config):
        raise ConfigError(
            f"node config lacks {DATA_PATH!r}: a deployed site reads only its own file "
            f"(docs/deployment.md); a simulated node is marked {MODE}={SIMULATION} by the launcher"
        )
    if PARTITION_ID not in node_config:
        raise ConfigError(f"node config needs {DATA_PATH!r} (and {SITE_NAME!r}) for this site")
    index = int(node_config[PARTITION_ID])
    if index >= len(spec.sites):
        raise ConfigError(
            f"node partition {index} has no site: dataset {spec.name!r} has "
            f"{len(spec.sites)} sites; run that many nodes"
        )
    name = spec.site_names[index]
    data_dir = os.environ.get(DATA_DIR_ENV)
    return name, site_file(spec, name, Path(data_dir) if data_dir else None)


def _site_bytes(site: SiteData) -> int:
    return sum(
        a.nbytes for a in (site.x_train, site.y_train, site.x_test, site.y_test, site.x_val, site.y_val)
    )


_CACHE: ByteBoundedCache[SiteData] = ByteBoundedCache(cache_limit_bytes(), _site_bytes)


def load_this_site(node_config: dict, spec: DatasetSpec) -> SiteData:
    """The node's encoded train/validation/test split, cached per process within a byte budget."""
    name, path = site_location(node_config, spec)
    return _CACHE.get_or_load((str(path), spec.to_json(), name), lambda: validated_site(path, spec, name))
