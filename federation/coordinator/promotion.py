"""Act: move a task's ``champion`` alias to a version, only on a passing comparison.

``lhsfed promote TASK VERSION --reason TEXT`` reads the comparison ``lhsfed compare`` made of
that version (the challenger) against the current champion on every site, applies the rule,
and moves the alias when it passes, or when ``--override`` is given with the reason why. The
outcome is stored on the version as tags (who, when, why, the rule and what it found), so
the registry itself is the record a clinical quality team audits (docs/learning-loop.md).
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.coordinator.registry import (
    CHALLENGER,
    CHAMPION,
    _client,
    _registered,
    _registry_errors,
)
from federation.core.errors import ConfigError
from federation.core.promotion_rule import PromotionRule, Verdict, judge

__all__ = ["PromotionRule", "Verdict", "judge", "promote", "read_comparison"]

COMPARISON = "comparison.json"  # as lhsfed compare writes it, in its folder and on the challenger's run
PREVIOUS_CHAMPION = "previous_champion"


@dataclass(frozen=True)
class Promotion:
    task: str
    version: str
    replaced: str | None
    verdict: Verdict
    override: bool
    test_decisions: int = 1  # promotions of the task decided on the sites' test splits, this one included

    def reuse_line(self) -> str:
        """What the test splits' reuse means for the figures (Dwork et al., Science 2015: a
        holdout reused for decisions is no longer untouched); empty for the first decision."""
        if self.test_decisions <= 1:
            return ""
        return (
            f"test splits reused: the sites' test rows have now decided {self.test_decisions} "
            f"promotions of {self.task}; a champion's test figures are optimistic by that reuse "
            "(under DP each decision read only noisy releases, which bounds it): confirm it on "
            "patients who arrive after it, a later campaign's test rows"
        )

    def line(self) -> str:
        how = "by override" if self.override and not self.verdict.passed else "rule passed"
        was = f" (was version {self.replaced})" if self.replaced else ""
        return f"{self.task}: version {self.version} is now champion{was}, {how}"


def read_comparison(path: Path) -> dict[str, Any]:
    try:
        comparison = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"--comparison {path}: cannot be read as a comparison ({err}); give the "
            f"{COMPARISON} that lhsfed compare wrote"
        ) from None
    if not isinstance(comparison, dict) or "sites" not in comparison or "challenger" not in comparison:
        raise ConfigError(f"--comparison {path}: not a {COMPARISON} of lhsfed compare")
    return comparison


def _logged_comparison(client, task: str, version) -> dict[str, Any] | None:
    """The comparison logged on the version's MLflow run (the latest ``lhsfed compare``)."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as scratch:
        for folder in ("", "comparison"):
            try:
                found = client.list_artifacts(version.run_id, folder or None)
            except MlflowException:
                continue
            for item in found:
                if not item.is_dir and Path(item.path).name == COMPARISON:
                    return read_comparison(
                        Path(client.download_artifacts(version.run_id, item.path, scratch))
                    )
    return None


def promote(
    uri: str,
    task: str,
    version: str,
    *,
    reason: str,
    rule: PromotionRule | None = None,
    comparison_path: Path | None = None,
    override: bool = False,
) -> Promotion:
    """Move ``champion`` to ``version`` if the rule passes (or ``override``); else refuse,
    changing nothing. A comparison made against another champion than today's is stale."""
    from mlflow.exceptions import MlflowException

    rule = rule or PromotionRule()
    if not reason or not reason.strip():
        raise ConfigError("--reason is required: say why this version should be the champion")
    with _registry_errors(uri):
        client = _client(uri, create=False)
        aliases = {a: str(v) for a, v in _registered(client, uri, task).aliases.items()}
        try:
            target = client.get_model_version(task, str(version))
        except MlflowException:
            raise ConfigError(f"task {task} in {uri} has no version {version}") from None
        champion = aliases.get(CHAMPION)
        if champion == str(version):
            raise ConfigError(f"version {version} of {task} is already the champion")
        comparison = (
            read_comparison(comparison_path)
            if comparison_path is not None
            else _logged_comparison(client, task, target)
        )
        verdict = _verdict(comparison, rule, task=task, version=str(version), champion=champion)
        if not verdict.passed and not override:
            raise ConfigError(
                f"not promoted: version {version} vs champion {champion}: {verdict.text()}; "
                "the champion is unchanged (--override with --reason to promote anyway)"
            )
        decided = 1 + sum(
            "promotion.at" in v.tags and str(v.version) != str(version)
            for v in client.search_model_versions(f"name='{task}'")
        )
        client.set_registered_model_alias(task, CHAMPION, str(version))
        if champion is not None:
            client.set_registered_model_alias(task, PREVIOUS_CHAMPION, champion)
        if aliases.get(CHALLENGER) == str(version):
            client.delete_registered_model_alias(task, CHALLENGER)
        tags = _tags(reason, rule, verdict, override, champion) | {"promotion.test_decisions": str(decided)}
        for key, value in tags.items():
            client.set_model_version_tag(task, str(version), key, value)
    return Promotion(task, str(version), champion, verdict, override, decided)


def _verdict(comparison, rule: PromotionRule, *, task: str, version: str, champion: str | None) -> Verdict:
    if champion is None:
        return Verdict(True, [])  # nothing to compare with: the first champion
    if comparison is None:
        return Verdict(False, [f"no comparison of version {version}: run lhsfed compare {task} first"])
    compared = (
        str((comparison.get("challenger") or {}).get("version")),
        str((comparison.get("champion") or {}).get("version")),
    )
    if compared != (version, champion):
        return Verdict(
            False,
            [
                f"the comparison is of version {compared[0]} against {compared[1]}, not of {version} "
                f"against today's champion {champion}: run lhsfed compare {task} again"
            ],
        )
    return judge(comparison, rule)


def _tags(
    reason: str, rule: PromotionRule, verdict: Verdict, override: bool, replaced: str | None
) -> dict[str, str]:
    parts = {f"promotion.rule.{part.name}": part.line()[:5000] for part in verdict.parts}
    if verdict.too_small:
        parts["promotion.rule.too_small_to_tell"] = "; ".join(verdict.too_small)[:5000]
    return parts | {
        "promotion.by": getpass.getuser(),
        "promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion.reason": reason.strip()[:5000],
        "promotion.rule": rule.text(),
        "promotion.rule_outcome": verdict.text()[:5000],
        "promotion.override": str(bool(override and not verdict.passed)).lower(),
        "promotion.replaced_version": replaced or "none",
    }
