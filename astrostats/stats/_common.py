"""Shared helpers of the stats layer: the tidy result shape, input checks on arrays and tables, seeds.

Every test or estimate returns one row per result with ``statistic, p_value, ci_low, ci_high, effect, n,
method`` (pingouin's convention) plus ``effect_name``, ``status`` and ``reason``: a statistic that cannot be
computed is never a silent NaN but a row whose ``status`` says why. Raw resampling draws travel in
``DataFrame.attrs["draws"]`` (a dict of numpy arrays) so that nothing is recomputed to inspect them.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from astrostats.validation import InputError, check_choice, check_float, fail

RESULT_COLUMNS = ("statistic", "p_value", "ci_low", "ci_high", "effect", "n", "method")
EXTRA_COLUMNS = ("effect_name", "status", "reason")
DEFAULTS = {**{column: np.nan for column in RESULT_COLUMNS}, "effect_name": "", "status": "ok", "reason": ""}
ALTERNATIVES = ("two-sided", "greater", "less")


class StatsWarning(UserWarning):
    """A requested method was replaced by a safer one (e.g. BCa falling back to percentile)."""


class Draws(dict):
    """Raw resampling draws (name -> array) kept in ``DataFrame.attrs``.

    Compares by identity, so that ``pandas.concat`` of several results (which compares ``attrs`` with
    ``==``) simply drops the draws instead of failing on array comparison.
    """

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


def _honest_status(row: dict) -> dict:
    """A row marked "ok" (or unmarked) whose statistic or p-value is not a finite number, or whose p-value
    is 0 (no test here can give p = 0 honestly: Monte-Carlo p-values are (k + 1) / (B + 1)), is not ok:
    its status says the numbers could not be computed, and the p-value is NaN rather than a false 0."""
    if row.get("status", "ok") != "ok":
        return row
    # a row that declares its estimate an interval (``interval_estimate``: statistic NaN when the interval has
    # width, ci_high +inf for a one-sided bound) is checked on its p-value alone
    checked = ("p_value",) if row.get("interval_estimate") else ("statistic", "p_value")
    problems = [name for name in checked
                if name in row and not (isinstance(row[name], (int, float, np.number)) and np.isfinite(row[name]))]
    problems += [name for name in ("ci_low", "ci_high") if not row.get("interval_estimate")
                 and isinstance(row.get(name), (float, np.floating)) and np.isinf(row[name])]
    if "p_value" in row and not problems and row["p_value"] == 0 and "permutation" in str(row.get("method", "")):
        problems.append("p_value")
    if not problems:
        return row
    return {**row, "p_value": np.nan, "status": "not_computable",
            "reason": f"{' and '.join(problems)} not a finite number (overflow or degenerate data)"}


def result_frame(rows: list[dict], draws: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Rows -> DataFrame with the standard columns first, extras after; draws kept in ``attrs``. A status
    always matches its numbers (:func:`_honest_status`)."""
    rows = [_honest_status(row) for row in rows]
    extras = list(dict.fromkeys([*(key for row in rows for key in row), *EXTRA_COLUMNS]))
    frame = pd.DataFrame([{**DEFAULTS, **row} for row in rows],  # one build, no column inserts
                         columns=list(RESULT_COLUMNS) + [c for c in extras if c not in RESULT_COLUMNS])
    frame.attrs["draws"] = Draws(draws or {})
    return frame


def as_vector(name: str, values: Any, *, min_size: int = 1, positive: bool = False) -> np.ndarray:
    """A finite 1-D float64 array (from a list, array, Series or tensor) with at least ``min_size`` entries."""
    try:
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(name, "a 1-D array of numbers", values) from None
    if array.ndim != 1:
        raise fail(name, "a 1-D array", f"array of shape {array.shape}")
    if array.size < min_size:
        raise fail(name, f"at least {min_size} values", f"{array.size} values")
    if not np.isfinite(array).all():
        raise fail(name, "finite values (no NaN or inf)", f"{int((~np.isfinite(array)).sum())} non-finite of {array.size}")
    if positive and (array <= 0).any():
        raise fail(name, "positive values", f"minimum {array.min()!r}")
    return array


def as_pair(a: Any, b: Any, *, min_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a = as_vector("a", a, min_size=min_size)
    b = as_vector("b", b, min_size=min_size)
    if a.shape != b.shape:
        raise fail("b", f"the same length as a ({a.size})", b.size)
    return a, b


def check_confidence(confidence: Any) -> float:
    confidence = check_float("confidence", confidence, minimum=0.0, strict=True, maximum=1.0)
    if confidence >= 1.0:
        raise fail("confidence", "a number in (0, 1)", confidence)
    return confidence


def t_over_z(confidence: float, dof: float) -> float:
    """t_dof / z at a two-sided ``confidence``: the factor that widens bootstrap deviations whose variance rests
    on ``dof`` degrees of freedom (few sequences or feature draws) to a t interval."""
    from scipy import stats

    level = 0.5 + confidence / 2
    return float(stats.t.ppf(level, dof) / stats.norm.ppf(level))


def check_alternative(alternative: Any) -> str:
    return check_choice("alternative", alternative, ALTERNATIVES)


def check_columns(table: Any, columns: Sequence[str], name: str = "table") -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise fail(name, "a pandas DataFrame", type(table).__name__)
    absent = [column for column in columns if column not in table.columns]
    if absent:
        raise fail(name, f"columns {list(columns)}", f"missing {absent}; has {list(table.columns)}")
    if table.empty:
        raise fail(name, "a non-empty table", "0 rows")
    return table


def monte_carlo_p(exceed: int, n_resamples: int) -> tuple[float, float]:
    """p = (k + 1) / (B + 1) (never zero; Phipson & Smyth 2010) and its Monte-Carlo standard error."""
    p = (exceed + 1) / (n_resamples + 1)
    return p, math.sqrt(p * (1 - p) / n_resamples)


def warn(message: str) -> None:
    warnings.warn(message, StatsWarning, stacklevel=3)


__all__ = ["InputError", "StatsWarning", "Draws", "RESULT_COLUMNS", "result_frame", "as_vector", "as_pair",
           "check_confidence", "check_alternative", "check_columns", "monte_carlo_p", "warn"]
