"""What a finished run folder puts into the registry: params, metrics by round, tags, the bar.

Pure reading of the run folder (``.hydra/config.yaml``, ``metrics.jsonl``, ``summary.json``),
apart from MLflow, so the content is tested without a tracking store and
``federation.coordinator.registry`` only writes it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.core.errors import ConfigError
from federation.core.records import RoundRecord, read_round_records
from federation.core.run_layout import (
    DRIFT,
    EVALUATION,
    EXPORT,
    HYDRA_CONFIG,
    METRICS,
    MODEL,
    MODEL_CARD,
    REPORT_HTML,
    REPORT_MD,
    SUMMARY,
    read_json,
)

# MLflow keys: letters, digits, '_', '-', '.', ' ', '/'; a site name may hold anything else.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
SPLITS = {"validation": "validation", "test": "evaluate"}  # metric prefix -> RoundRecord field
MODEL_ARTIFACT = "model"  # the run folder's model.pt, under this artifact folder
# Run-folder file -> artifact folder (None: the top); the report and model card if present.
ARTIFACTS = {
    MODEL: MODEL_ARTIFACT,
    METRICS: None,
    SUMMARY: None,
    str(HYDRA_CONFIG): "config",
    REPORT_HTML: "report",
    REPORT_MD: "report",
    EVALUATION: "report",
    f"{EXPORT}/{MODEL_CARD}": "model_card",
    DRIFT: "drift_before",  # the parent champion's latest drift check (a warm start from it)
}


@dataclass(frozen=True)
class Bar:
    """The selected round's pooled VALIDATION AUROC, which a new version must reach, and its
    standard error. The bar is a decision, so it reads the validation split only, as selection
    does: the test split is reported (``selected/test/...``), never decided by. A run without
    validation rows registers no version; a DP release whose noisy class totals left the AUROC
    undefined (``undefined``: at the four small UCI sites about 1 run in 5 at 2 rounds, 1 in 2
    at 10) cannot show the model below the bar either, so, as for any noisy release, the
    version is registered, tagged and announced as unchecked."""

    auroc: float | None
    se: float = 0.0  # its standard error when it came from the sites' DP releases
    undefined: bool = False  # released under DP, but the noise left the AUROC undefined
    split = "validation"  # the one split a bar is read on (a tag of the version: selection_split)

    def reached(self, minimum: float) -> bool:
        """The bar is reached unless the AUROC is below it by more than its noise (one-sided
        95 %, as selection's ties: server.selection.TIE_Z): a noisy release is no evidence of
        a worse model, a precise one acts as an exact number; an AUROC the noise left
        undefined has unbounded noise. No validation AUROC at all never reaches it."""
        from server.selection import TIE_Z

        if self.undefined:
            return True
        if self.auroc is None or not math.isfinite(self.auroc):
            return False
        return self.auroc + TIE_Z * self.se >= minimum


@dataclass(frozen=True)
class CampaignRecord:
    """Everything logged for one run (one MLflow run)."""

    params: dict[str, str]
    metrics: list[tuple[str, float, int]]  # (key, value, step = round)
    epsilon: dict[str, float | None]  # per site, this run (None: DP off)
    selected_round: int | None
    bar: Bar
    sites: list[str] = field(default_factory=list)
    # per site, its lifetime ε after the run (its ledger: every run it joined; None: DP off)
    site_epsilon: dict[str, float | None] = field(default_factory=dict)


def key(*parts: str) -> str:
    """An MLflow metric/tag key from parts (a site name's odd characters become '_')."""
    return "/".join(_UNSAFE.sub("_", str(p)) for p in parts)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a.b.c": value}; a list stays one value (JSON text)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        flat |= flatten(value, f"{prefix}.{name}" if prefix else str(name))
    return flat


def param_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value)


def round_metrics(records: list[RoundRecord]) -> list[tuple[str, float, int]]:
    """Per round: pooled and per-site numbers of both splits, each site's ε after that round."""
    rows: list[tuple[str, float, int]] = []
    for record in records:
        for prefix, attribute in SPLITS.items():
            evaluation = getattr(record, attribute)
            for who, metrics in {"pooled": evaluation.pooled, **evaluation.sites}.items():
                rows += [(key(prefix, who, m), v, record.round) for m, v in _numbers(metrics)]
        # each site's ε after the round: the largest it reported in it (training, and under DP
        # the releases, each with the ledger's ε right after it), so the last is the ledger's
        spent: dict[str, float] = {}
        for part in (record.train, record.validation.sites, record.evaluate.sites):
            for site, metrics in part.items():
                for m, v in _numbers(metrics):
                    if m == "epsilon":
                        spent[site] = max(spent.get(site, v), v)
        rows += [(key("epsilon", site), v, record.round) for site, v in spent.items()]
    return rows


def final_epsilon(
    rows: list[tuple[str, float, int]], summary: dict[str, Any]
) -> list[tuple[str, float, int]]:
    """``rows`` with each site's ε at the last step set to what it spent in the whole run
    (summary.json): MLflow shows a metric's last step, and under DP the test release (logged at
    the round it tested, which need not be the last) and a personalization come after every
    round, so the last round's own ε fell short of the run's (issue T, acceptance 2)."""
    privacy = (summary.get("privacy") or {}).get("sites") or {}
    final = {
        key("epsilon", s): float(e["epsilon"]) for s, e in privacy.items() if e.get("epsilon") is not None
    }
    steps = [step for name, _, step in rows if name in final]
    if not final or not steps:
        return rows
    last = max(steps)
    kept = [row for row in rows if not (row[0] in final and row[2] == last)]
    return kept + [(name, value, last) for name, value in sorted(final.items())]


def _numbers(metrics: dict[str, Any]):
    for name, value in sorted(metrics.items()):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield name, float(value)


def selected_metrics(summary: dict[str, Any]) -> list[tuple[str, float, int]]:
    """The selected round's pooled validation and test numbers, as ``selected/SPLIT/pooled/M``."""
    server_round = (summary.get("selection") or {}).get("round")
    if server_round is None:
        return []
    pooled = {
        "validation": (summary.get("selection") or {}).get("validation") or {},
        "test": ((summary.get("metrics") or {}).get("pooled")) or {},
    }
    rows = [("selected_round", float(server_round), int(server_round))]
    for split, metrics in pooled.items():
        rows += [(key("selected", split, "pooled", m), v, int(server_round)) for m, v in _numbers(metrics)]
    return rows


def artifacts(run_dir: Path) -> list[tuple[Path, str | None]]:
    """The run-folder files that exist, each with its artifact folder."""
    found = [(Path(run_dir) / name, folder) for name, folder in ARTIFACTS.items()]
    return [(path, folder) for path, folder in found if path.is_file()]


def bar_of(summary: dict[str, Any]) -> Bar:
    """Pooled validation AUROC of the selected round and its standard error (``summary.json``
    ``selection.validation``); the test split's numbers are never read here."""
    validation = (summary.get("selection") or {}).get("validation") or {}
    auroc = validation.get("auroc")
    if auroc is None or not math.isfinite(float(auroc)):
        # a DP release (it carries standard errors) of real rows whose noise left AUROC undefined
        rows = validation.get("n_validation", validation.get("n_test")) or 0  # older summaries: n_test
        noisy = rows > 0 and ("loss_se" in validation or "auroc_se" in validation)
        return Bar(None, math.inf if noisy else 0.0, undefined=noisy)
    return Bar(float(auroc), float(validation.get("auroc_se") or 0.0))


def git_commit(folder: Path) -> str | None:
    """The commit checked out at ``folder``, or None (not a checkout, no git)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def read_campaign(run_dir: Path) -> CampaignRecord:
    """The record of a finished run folder, or one ConfigError naming the missing file."""
    run_dir = Path(run_dir)
    missing = [name for name in (HYDRA_CONFIG, METRICS, SUMMARY, MODEL) if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(
            f"{run_dir} lacks {', '.join(map(str, missing))}: a campaign is logged from a finished "
            "run folder (a deployment's folder must be on the coordinator's machine)"
        )
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(run_dir / HYDRA_CONFIG), resolve=True)
    summary = read_json(run_dir / SUMMARY)
    privacy = (summary.get("privacy") or {}).get("sites") or {}
    epsilon = {site: entry.get("epsilon") for site, entry in sorted(privacy.items())}
    site_epsilon = {site: entry.get("site_epsilon") for site, entry in sorted(privacy.items())}
    return CampaignRecord(
        params={k: param_text(v) for k, v in flatten(config).items()},
        metrics=final_epsilon(round_metrics(read_round_records(run_dir)), summary)
        + selected_metrics(summary),
        epsilon=epsilon,
        selected_round=(summary.get("selection") or {}).get("round"),
        bar=bar_of(summary),
        sites=sorted(privacy) or sorted((config.get("data") or {}).get("sites") or {}),
        site_epsilon=site_epsilon,
    )
