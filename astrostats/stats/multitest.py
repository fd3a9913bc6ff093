"""Family-wise (Holm, Bonferroni) and false-discovery (Benjamini-Hochberg) correction of a results table.

A thin layer over ``statsmodels.stats.multitest.multipletests`` that works on the tidy tables of this
package: it adds ``p_value_adjusted``, ``reject`` and ``correction`` columns, optionally per family (``by``).
"""
from __future__ import annotations

import gc

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from astrostats.stats._common import check_columns
from astrostats.validation import check_choice, check_float, fail

METHODS = {"holm": "holm", "bonferroni": "bonferroni", "bh": "fdr_bh", "fdr_bh": "fdr_bh", "by": "fdr_by"}


def _multipletests(p: np.ndarray, alpha: float, method: str):
    """statsmodels' multipletests, with the heap frozen: its Holm step calls gc.collect(), which otherwise
    walks every live object of the run (0.2 s and more per family in a full run); frozen objects are skipped.
    A heap the caller froze is left as it is (unfreezing would undo the caller's freeze)."""
    if gc.get_freeze_count():
        return multipletests(p, alpha=alpha, method=method)
    gc.freeze()
    try:
        return multipletests(p, alpha=alpha, method=method)
    finally:
        gc.unfreeze()


def adjust_p_values(table: pd.DataFrame, *, method: str = "holm", alpha: float = 0.05, p_col: str = "p_value",
                    by: Sequence[str] | None = None) -> pd.DataFrame:
    """Copy of ``table`` with adjusted p-values; each ``by`` group (or the whole table) is one family.

    method: "holm" (default; controls the family-wise error rate), "bonferroni", "bh" (Benjamini-Hochberg,
    controls the false discovery rate) or "by" (Benjamini-Yekutieli). Rows whose p-value is missing (a test
    that could not be computed) are left out of the family and say so in ``correction``.

    Examples
    --------
    >>> import pandas as pd
    >>> from astrostats.stats import adjust_p_values
    >>> adjusted = adjust_p_values(pd.DataFrame({"p_value": [0.01, 0.02, 0.04]}), method="holm")
    >>> adjusted["p_value_adjusted"].round(3).tolist(), adjusted["reject"].tolist()
    ([0.03, 0.04, 0.04], [True, True, True])
    """
    check_columns(table, [p_col] + list(by or []))
    method = check_choice("method", method, list(METHODS))
    alpha = check_float("alpha", alpha, minimum=0.0, strict=True, maximum=1.0)
    raw = table[p_col]
    if raw.dtype == bool or raw.map(lambda value: isinstance(value, (bool, np.bool_))).any():
        raise fail(p_col, "numeric p-values (True/False are not p-values)", raw[raw.map(type) == bool].tolist()[:3])
    numeric = pd.to_numeric(raw, errors="coerce")
    unreadable = numeric.isna() & raw.notna()  # a string such as "abc" is an error, never read as missing
    if unreadable.any():
        raise fail(p_col, "numeric p-values (missing ones as NaN or None)", raw[unreadable].tolist()[:3])
    p = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    valid = ~np.isnan(p)
    if ((p[valid] < 0) | (p[valid] > 1)).any():
        raise fail(p_col, "p-values in [0, 1]", p[valid][(p[valid] < 0) | (p[valid] > 1)][:3])
    out = table.copy()
    adjusted = np.full(p.size, np.nan)
    reject = np.zeros(p.size, dtype=bool)
    families = (np.zeros(len(table), dtype=np.int64) if not by
                else table.groupby(list(by), sort=False, dropna=False).ngroup().to_numpy())
    sizes = np.zeros(p.size, dtype=np.int64)
    for family in np.unique(families):
        rows = np.flatnonzero((families == family) & valid)
        if rows.size:
            reject[rows], adjusted[rows], _, _ = _multipletests(p[rows], alpha, METHODS[method])
            sizes[rows] = rows.size
    out["p_value_adjusted"] = adjusted
    out["reject"] = reject
    out["family_size"] = sizes
    out["correction"] = np.where(valid, f"{METHODS[method]} (alpha={alpha})", "excluded: p_value missing")
    out.attrs = dict(table.attrs)
    return out
