"""Typed records of what the server writes into a run folder and other modules read back.

:class:`RoundRecord` is one line of ``metrics.jsonl`` (also kept in the resume state);
:class:`Evaluation` is the sites' evaluate replies of a round as the server combines them
(``sites`` and ``pooled``), the same two sections ``evaluation.json`` has. ``to_json`` gives
exactly the document written today (NaN as null, keys as on disk); ``from_json`` reads it
back, older records (no ``validation``, ``discarded``, ...) included. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.core.run_layout import METRICS, json_safe, read_jsonl

SiteMetrics = dict[str, Any]  # metric name -> value, as the site released it


@dataclass(frozen=True)
class Evaluation:
    """Per-site metrics and the pooled ones (empty: no site released this split)."""

    sites: dict[str, SiteMetrics] = field(default_factory=dict)
    pooled: SiteMetrics = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return json_safe({"sites": self.sites, "pooled": self.pooled})

    @classmethod
    def from_json(cls, document: dict[str, Any] | None) -> Evaluation:
        document = document or {}
        return cls(sites=dict(document.get("sites") or {}), pooled=dict(document.get("pooled") or {}))


@dataclass(frozen=True)
class RoundRecord:
    """One round: what each site trained, both evaluations, failures and the server's verdict.

    ``evaluate`` is the held-out test split (reported, never chosen by); ``validation`` the
    validation split (the only one selection reads). ``secure_aggregation`` is present only
    for a SecAgg+ round, whose server saw nothing but the sum.
    """

    round: int
    train: dict[str, SiteMetrics] = field(default_factory=dict)
    evaluate: Evaluation = field(default_factory=Evaluation)
    validation: Evaluation = field(default_factory=Evaluation)
    failures: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    aggregated: list[str] = field(default_factory=list)
    discarded: bool = False
    discard_reason: str | None = None
    secure_aggregation: dict[str, Any] | None = None

    @property
    def changed_model(self) -> bool:
        """Whether this round's aggregate replaced the global model."""
        return bool(self.aggregated) and not self.discarded

    def validation_value(self, metric: str) -> float | None:
        return self.validation.pooled.get(metric)

    def to_json(self) -> dict[str, Any]:
        document = {
            "round": self.round,
            "train": self.train,
            "evaluate": self.evaluate.to_json(),
            "validation": self.validation.to_json(),
            "failures": self.failures,
            "rejected": self.rejected,
            "aggregated": self.aggregated,
            "discarded": self.discarded,
            "discard_reason": self.discard_reason,
        }
        if self.secure_aggregation:
            document["secure_aggregation"] = self.secure_aggregation
        return json_safe(document)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> RoundRecord:
        return cls(
            round=int(document["round"]),
            train=dict(document.get("train") or {}),
            evaluate=Evaluation.from_json(document.get("evaluate")),
            validation=Evaluation.from_json(document.get("validation")),
            failures=list(document.get("failures") or []),
            rejected=list(document.get("rejected") or []),
            aggregated=list(document.get("aggregated") or []),
            discarded=bool(document.get("discarded")),
            discard_reason=document.get("discard_reason"),
            secure_aggregation=document.get("secure_aggregation") or None,
        )

    def normalized(self) -> RoundRecord:
        """The record exactly as it reads back from disk (NaN already null): what a run
        keeps in memory, so a resumed run decides from the same values."""
        return RoundRecord.from_json(self.to_json())


def read_rounds(run_dir: Path) -> list[dict]:
    """Every complete round of a run folder's ``metrics.jsonl``, as the JSON on disk (the one
    reader of that file; what tests and the console's progress lines look at)."""
    return read_jsonl(Path(run_dir) / METRICS)


def read_round_records(run_dir: Path) -> list[RoundRecord]:
    """Every complete round of a run folder's ``metrics.jsonl``, typed."""
    return [RoundRecord.from_json(r) for r in read_rounds(run_dir)]
