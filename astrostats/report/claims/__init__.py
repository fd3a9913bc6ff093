"""One module per claim: CLAIM_ID, STATEMENT, RULE and judge(tables) -> ClaimVerdict."""
from __future__ import annotations

import math

import pandas as pd


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


def astrocyte_positive(table):
    """The rows of the circuit under audit: the astrocyte circuit with the paper's positive features
    (columns that a table lacks select nothing away)."""
    if "circuit" in table:
        table = table[table["circuit"] == "astrocyte"]
    if "feature_map" in table:
        table = table[table["feature_map"] == "positive"]
    return table

__all__ = ["finite", "quote", "is_floor", "astrocyte_positive"]
