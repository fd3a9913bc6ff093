"""One module per claim: CLAIM_ID, STATEMENT, RULE and judge(tables) -> ClaimVerdict."""
from __future__ import annotations

import math


def finite(value) -> float | None:
    """A float for the audit, or None where the table holds no finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def quote(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)
