"""The site's own dataset spec: the schema its data is read with, whatever the run says.

The coordinator's run config carries a dataset spec so that every side builds the same
model; a site never reads its file with it. A deployed node loads the spec file hospital IT
checked its data with (node config ``spec-path``, the file given to ``lhsfed site check
--spec``) and refuses a run whose spec differs from it in anything but where the embedded
copy lives, naming the first differing key (never a value read from the file). The split
(test fraction, seed) is part of the spec, so the site's split is the site's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from federation.core.dataspec import DatasetSpec, load_spec_file
from federation.core.errors import ConfigError

log = logging.getLogger(__name__)
# Where the packaged copy of a public dataset lives: not part of the schema.
_NOT_SCHEMA = ("embedded",)


class SpecMismatch(ConfigError):
    """The run's dataset spec is not the one this site checked its data with."""


def canonical(spec: DatasetSpec) -> dict:
    return {k: v for k, v in json.loads(spec.to_json()).items() if k not in _NOT_SCHEMA}


def spec_hash(spec: DatasetSpec) -> str:
    """SHA-256 of the spec's canonical form (sorted JSON, without packaging keys)."""
    return hashlib.sha256(json.dumps(canonical(spec), sort_keys=True).encode()).hexdigest()


def first_difference(site: object, run: object, path: str = "") -> str | None:
    """The key path of the first place two canonical specs differ (None if equal)."""
    if isinstance(site, dict) and isinstance(run, dict):
        for key in sorted(set(site) | set(run)):
            where = f"{path}.{key}" if path else key
            if key not in site or key not in run:
                return where
            found = first_difference(site[key], run[key], where)
            if found:
                return found
        return None
    if isinstance(site, list) and isinstance(run, list):
        for i, (a, b) in enumerate(zip(site, run)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None if len(site) == len(run) else f"{path} (length {len(site)} vs {len(run)})"
    return None if site == run else path


def site_spec(spec_path: Path | None, run_spec: DatasetSpec) -> DatasetSpec:
    """The spec this site reads its data with; raises :class:`SpecMismatch` if the run's differs."""
    if spec_path is None:  # simulation: the launcher plays the site and sent this spec
        return run_spec
    own = load_spec_file(Path(spec_path))
    if spec_hash(own) == spec_hash(run_spec):
        return own
    where = first_difference(canonical(own), canonical(run_spec))
    log.warning("run's dataset spec differs from the site's %s at %s", spec_path, where)
    raise SpecMismatch(
        f"the run's dataset spec differs from this site's at {where}: the site "
        "reads its data only with the spec it checked"
    )
