"""The audit's vocabulary: a verdict per claim, decided by a written rule, citing its evidence.

A claim module (``astrostats.claims.cN_*``) exposes ``CLAIM_ID``, ``STATEMENT`` and
``judge(tables: dict[str, pandas.DataFrame]) -> ClaimVerdict``. ``tables`` maps table names (the file
stems under tables/) to DataFrames; a rule that finds its tables missing returns INSUFFICIENT_DATA with
the reason. No verdict other than INSUFFICIENT_DATA / NOT_TESTABLE may be returned without evidence.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

VERDICTS = ("SUPPORTED", "NOT_SUPPORTED", "INCONCLUSIVE", "NOT_TESTABLE", "INSUFFICIENT_DATA")


@dataclass(frozen=True)
class Evidence:
    """One number behind a verdict, traceable to the rows of a stored table."""

    table: str  # file stem under tables/
    rows: str  # a pandas query string selecting the rows, e.g. "feature_map == 'positive'"
    statistic: str  # what the number is, e.g. "alpha"
    value: float
    p_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    effect: str | None = None  # effect size, stated with its name, e.g. "error ratio 0.42"
    note: str = ""

    def to_dict(self) -> dict:
        return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in asdict(self).items()}


@dataclass(frozen=True)
class ClaimVerdict:
    claim_id: str
    statement: str
    verdict: str
    rule: str  # the fixed decision rule, with thresholds, alpha, margin, correction
    evidence: tuple[Evidence, ...] = ()
    reason: str = ""  # one sentence: why this verdict under the rule
    major_concerns: tuple[str, ...] = ()
    minor_concerns: tuple[str, ...] = ()
    analyses_needed: tuple[str, ...] = ()
    headline: str = ""  # the one number behind the verdict, for the report's first page
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {VERDICTS}, got {self.verdict!r}")
        if self.verdict not in ("INSUFFICIENT_DATA", "NOT_TESTABLE") and not self.evidence:
            raise ValueError(f"claim {self.claim_id}: verdict {self.verdict} needs evidence")

    def to_dict(self) -> dict:
        return {"id": self.claim_id, "statement": self.statement, "verdict": self.verdict, "rule": self.rule,
                "reason": self.reason, "headline": self.headline,
                "evidence": [item.to_dict() for item in self.evidence],
                "major_concerns": list(self.major_concerns), "minor_concerns": list(self.minor_concerns),
                "analyses_needed": list(self.analyses_needed), "details": self.details}


def missing(claim_id: str, statement: str, rule: str, tables: dict, needed: list[str], analysis: str) -> ClaimVerdict | None:
    """INSUFFICIENT_DATA when any needed table is absent (the analysis has not run), else None."""
    absent = [name for name in needed if name not in tables or tables[name].empty]
    if not absent:
        return None
    return ClaimVerdict(claim_id, statement, "INSUFFICIENT_DATA", rule,
                        reason=f"tables {absent} not found: run `python -m astrostats.analyze {analysis}`",
                        analyses_needed=(f"{analysis} (tables {', '.join(absent)})",))
