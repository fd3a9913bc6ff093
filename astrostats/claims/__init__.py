"""The claims layer: one module per claim (CLAIM_ID, STATEMENT, RULE and judge(tables, circuit) -> ClaimVerdict),
its verdict type (:mod:`astrostats.claims.verdicts`) and the judging of all of them
(:func:`astrostats.claims.judging.judge_all`). Claims read tables only; studies and the report import them.

``circuit`` says which rows are the circuit under audit's (:class:`AuditedCircuit`, read from the run's
manifest; the paper's astrocyte circuit where a run names none)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from astrostats.constants import DEFAULT_CIRCUIT, DEFAULT_FEATURE_MAP


@dataclass(frozen=True)
class AuditedCircuit:
    """The circuit under audit as the tables name it: its registered name and its own feature map."""

    name: str = DEFAULT_CIRCUIT
    feature_map: str = DEFAULT_FEATURE_MAP

    @classmethod
    def from_manifest(cls, manifest: dict) -> "AuditedCircuit":
        """The run's circuit under audit (a manifest written before it was recorded: the default)."""
        recorded = manifest.get("audited_circuit") or {}
        return cls(str(recorded.get("name", DEFAULT_CIRCUIT)), str(recorded.get("feature_map", DEFAULT_FEATURE_MAP)))

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_CIRCUIT

    def not_about_it(self, claim_id: str, statement: str, rule: str, what: str):
        """The verdict of a claim about the paper's astrocyte when another circuit is under audit: NOT_TESTABLE
        for it (the analysis behind the claim models the astrocyte, not this circuit), never a borrowed verdict."""
        from astrostats.claims.verdicts import ClaimVerdict

        return ClaimVerdict(claim_id, statement, "NOT_TESTABLE", rule, reason=(
            f"not testable for the circuit under audit ({self.name}): {what} concerns the paper's astrocyte circuit "
            f"({DEFAULT_CIRCUIT}); audit that circuit for this claim"))

    def rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """The rows of the circuit under audit with its own features (a column a table lacks selects nothing away)."""
        if "circuit" in table:
            table = table[table["circuit"] == self.name]
        if "feature_map" in table:
            table = table[table["feature_map"] == self.feature_map]
        return table


def finite(value) -> float | None:
    """A float for the audit, or None where the table holds no finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def quote(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def is_floor(row) -> bool:
    """Whether a fit row says the error never reaches the tolerance: the infinite flag (a missing flag, NaN in
    tables concatenated with older rows, is not a floor) or an infinite m_required."""
    flag = row.get("m_required_10pct_infinite", False)
    value = pd.to_numeric(row.get("m_required_10pct", math.nan), errors="coerce")
    return bool(pd.notna(flag) and bool(flag)) or value == math.inf


def _count(table, count_column: str, label_column: str) -> int | None:
    """The fewest of something per row (a fits table's n_seeds) or the distinct labels (a measurement table)."""
    if count_column in table:
        values = pd.to_numeric(table[count_column], errors="coerce").dropna()
        return int(values.min()) if len(values) else None
    if label_column in table:
        return int(table[label_column].nunique())
    return None


def m_span_decades(table) -> float | None:
    """log10(largest m / smallest m) of a measurement table (column m) or a fits table (m_min, m_max)."""
    if "m" in table:
        m = pd.to_numeric(table["m"], errors="coerce").dropna()
        low, high = (m.min(), m.max()) if len(m) else (math.nan, math.nan)
    elif {"m_min", "m_max"} <= set(table.columns):
        low = pd.to_numeric(table["m_min"], errors="coerce").min()
        high = pd.to_numeric(table["m_max"], errors="coerce").max()
    else:
        return None
    return float(math.log10(high / low)) if low > 0 and math.isfinite(high / low) else None


def minimum_data(table, *, m_decades: float | None = None, seeds: int | None = None, sequences: int | None = None,
                 groups: int | None = None, group_by=("logit_scale",), observations: int | None = None) -> str | None:
    """The shortfall of ``table`` against a rule's stated minimum, or None when it has enough to decide.

    Works on a measurement table (columns m, seed, sequence_id) or a fits table (m_min, m_max, n_seeds,
    n_sequences: the fewest of any row counts); ``groups`` counts the distinct ``group_by`` keys (scales,
    heads); ``observations`` the fewest of column n over rows (or the rows themselves when there is no n).
    A requirement a table cannot show (its column is absent) is a shortfall too. A claim returns
    INSUFFICIENT_DATA with this text as its reason.
    """
    shortfalls = []
    if m_decades is not None:
        found = m_span_decades(table)
        if found is None or found < m_decades - 1e-9:
            shortfalls.append(f"m spans {'no range' if found is None else f'{found:.2g} decades'}, "
                              f"need >= {m_decades:g}")
    for need, count_column, label_column, what in ((seeds, "n_seeds", "seed", "feature seeds"),
                                                   (sequences, "n_sequences", "sequence_id", "sequences")):
        if need is not None:
            found = _count(table, count_column, label_column)
            if found is None or found < need:
                shortfalls.append(f"{'no' if found is None else found} {what}, need >= {need}")
    if groups is not None:
        keys = [column for column in group_by if column in table]
        found = len(table[keys].drop_duplicates()) if keys else 0
        if found < groups:
            shortfalls.append(f"{found} {'/'.join(group_by)} groups, need >= {groups}")
    if observations is not None:
        counts = pd.to_numeric(table["n"], errors="coerce") if "n" in table else pd.Series([len(table)])
        found = int(counts.min()) if counts.notna().all() and len(counts) else None
        if found is None or found < observations:
            shortfalls.append(f"{'unknown' if found is None else found} observations, need >= {observations}")
    return "; ".join(shortfalls) if shortfalls else None


__all__ = ["finite", "quote", "is_floor", "AuditedCircuit", "minimum_data", "m_span_decades"]
