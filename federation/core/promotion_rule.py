"""The promotion rule over several measures, applied to a ``comparison.json`` (pure).

Parts, each passing or failing on its own (docs/learning-loop.md, "Act"):

- ``auroc``: the pooled AUROC difference (challenger − champion) is at least
  ``min_pooled_difference`` (default 0: not lower); its 95 % interval is shown beside it.
- ``calibration``: the challenger's pooled ECE exceeds the champion's by at most ``ece_margin``.
- ``net_benefit``: the challenger's pooled net benefit at the comparison's threshold is below
  the champion's by at most ``net_benefit_margin``.
- ``sites``: no site is clearly worse on any measure: a site blocks when its difference
  interval lies entirely on the wrong side of that measure's site margin (AUROC below
  ``site_ci_floor``, ECE above ``ece_margin``, net benefit below ``-net_benefit_margin``). A
  site whose interval is wider than that measure's ``too_wide`` cannot show a harm of about
  the margin's size: it is named as too small to tell (it neither blocks nor vouches).

The margins are judgment calls, not derived quantities: a quality team should set them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PARTS = ("auroc", "calibration", "net_benefit", "sites")
_MEASURE = {"auroc": "auroc", "calibration": "ece", "net_benefit": "net_benefit"}
_LABEL = {"auroc": "AUROC", "ece": "ECE", "net_benefit": "net benefit"}


@dataclass(frozen=True)
class PromotionRule:
    """Defaults: AUROC not lower, ECE not higher by more than 0.02, net benefit not lower by
    more than 0.01 (one patient in 100 treated correctly), no site clearly worse."""

    min_pooled_difference: float = 0.0
    site_ci_floor: float = -0.02
    ece_margin: float = 0.02
    net_benefit_margin: float = 0.01
    too_wide: dict[str, float] = field(default_factory=lambda: {"auroc": 0.2, "ece": 0.1, "net_benefit": 0.1})

    def text(self) -> str:
        return (
            f"pooled AUROC difference >= {self.min_pooled_difference:g}; pooled ECE rise <= "
            f"{self.ece_margin:g}; pooled net benefit drop <= {self.net_benefit_margin:g}; no site's "
            f"difference CI entirely below {self.site_ci_floor:g} (AUROC), above {self.ece_margin:g} "
            f"(ECE) or below {-self.net_benefit_margin:g} (net benefit)"
        )

    def site_bad(self, measure: str, interval: list) -> bool:
        """Whether a site's difference interval lies entirely on the wrong side of the margin."""
        low, high = interval
        if measure == "auroc":
            return high is not None and high < self.site_ci_floor
        if measure == "ece":
            return low is not None and low > self.ece_margin
        return high is not None and high < -self.net_benefit_margin


@dataclass(frozen=True)
class Part:
    name: str
    passed: bool
    detail: str  # the figures and, when failing, why

    def line(self) -> str:
        return f"{self.name}: {'pass' if self.passed else 'FAIL'}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    findings: list[str]  # why it failed (empty: passed)
    parts: list[Part] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)  # sites that cannot tell, per measure

    def text(self) -> str:
        return "passed" if self.passed else "failed: " + "; ".join(self.findings)

    def lines(self) -> list[str]:
        """One line per part, the too-small sites, then the overall outcome."""
        out = [part.line() for part in self.parts]
        out += [f"too small to tell: {note}" for note in self.too_small]
        return out + [f"overall: {'PASS' if self.passed else 'FAIL'}"]


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _interval(found: dict) -> str:
    low, high = found.get("difference_ci") or [None, None]
    return f"[{low:+.4f}, {high:+.4f}]" if _finite(low) and _finite(high) else "[n/a]"


def _pooled_part(part: str, pooled: dict, rule: PromotionRule) -> Part:
    measure = _MEASURE[part]
    if part == "auroc":
        difference = pooled.get("auroc_difference")
        found = {"difference_ci": pooled.get("auroc_difference_ci")}
    else:
        found = (pooled.get("measures") or {}).get(measure) or {}
        difference = found.get("difference")
    if not _finite(difference):
        why = (
            "the comparison has no pooled AUROC difference (no site answered)"
            if part == "auroc"
            else f"the comparison has no pooled {_LABEL[measure]} difference (no site answered, the "
            "noise decides it, or it was made before this rule: run lhsfed compare again)"
        )
        return Part(part, False, why)
    ci = _interval(found)
    if part == "auroc":
        ok = difference >= rule.min_pooled_difference
        need = f"{'>=' if ok else '<'} {rule.min_pooled_difference:g}"
        detail = f"pooled AUROC difference {difference:+.4f} {need} (95% CI {ci})"
    elif part == "calibration":
        ok = difference <= rule.ece_margin
        was, now = found.get("champion", math.nan), found.get("challenger", math.nan)
        need = f"{'<=' if ok else '>'} margin {rule.ece_margin:g}"
        detail = f"pooled ECE {was:.4f} -> {now:.4f}: rise {difference:+.4f} {need} (95% CI {ci})"
    else:
        ok = difference >= -rule.net_benefit_margin
        threshold = pooled.get("threshold")
        at = f" at threshold {threshold:g}" if _finite(threshold) else ""
        was, now = found.get("champion", math.nan), found.get("challenger", math.nan)
        need = f"{'>=' if ok else '<'} {-rule.net_benefit_margin:g}"
        detail = (
            f"pooled net benefit{at} {was:.4f} -> {now:.4f}: difference {difference:+.4f} {need} "
            f"(95% CI {ci})"
        )
    return Part(part, ok, detail)


def _site_measures(row: dict) -> dict[str, dict]:
    """A site's difference and interval per measure (AUROC's is the site's own, paired)."""
    found = {"auroc": {"difference": row.get("auroc_difference"), "difference_ci": row.get("difference_ci")}}
    return found | {k: v for k, v in (row.get("measures") or {}).items() if k != "auroc"}


def judge(comparison: dict[str, Any], rule: PromotionRule) -> Verdict:
    """The rule applied to a comparison.json: every part's outcome, every failing site named."""
    pooled = comparison.get("pooled") or {}
    parts = [_pooled_part(part, pooled, rule) for part in ("auroc", "calibration", "net_benefit")]
    blocking, too_small = [], []
    for site, row in sorted((comparison.get("sites") or {}).items()):
        if row.get("too_noisy"):  # a DP release the noise decides: it neither blocks nor vouches
            too_small.append(f"site {site}: {row['too_noisy']}")
            continue
        wide = []
        for measure, found in _site_measures(row).items():
            interval = found.get("difference_ci") or [None, None]
            if not all(_finite(v) for v in interval):
                continue
            low, high = interval
            if rule.site_bad(measure, interval):
                side = "above" if measure == "ece" else "below"
                margin = {"auroc": rule.site_ci_floor, "ece": rule.ece_margin}.get(
                    measure, -rule.net_benefit_margin
                )
                prefix = "" if measure == "auroc" else f"{_LABEL[measure]} "
                blocking.append(
                    f"site {site}: {prefix}difference CI [{low:+.4f}, {high:+.4f}] entirely {side} {margin:g}"
                )
            elif high - low > rule.too_wide.get(measure, math.inf):
                wide.append(
                    f"{_LABEL.get(measure, measure)} (CI [{low:+.4f}, {high:+.4f}] wider than "
                    f"{rule.too_wide[measure]:g})"
                )
        if wide:
            too_small.append(f"site {site} on " + ", ".join(wide))
    sites = Part(
        "sites",
        not blocking,
        "; ".join(blocking) if blocking else "no site's difference CI lies beyond its margin",
    )
    parts.append(sites)
    findings = [p.detail for p in parts[:3] if not p.passed] + blocking
    return Verdict(not findings, findings, parts, too_small)
