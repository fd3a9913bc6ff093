"""Effect sizes with CIs, and the equivalence test (TOST) for "agrees within a tolerance delta".

Each function returns one tidy row (``statistic, p_value, ci_low, ci_high, effect, n, method`` ...).
Bootstrap CIs come from ``scipy.stats.bootstrap`` (BCa, falling back to percentile with a warning where
BCa is degenerate); the TOST from ``statsmodels.stats.weightstats``.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats import weightstats

from astrostats.stats._common import as_pair, as_vector, check_confidence, result_frame, warn
from astrostats.stats.resampling import cliffs_delta_value, paired_permutation_test, two_sample_permutation_test
from astrostats.validation import check_float, check_int
from astrostats.seeding import numpy_rng


def _scipy_bootstrap(data: tuple, statistic, *, paired: bool, n_resamples: int, seed: Any,
                     confidence: float) -> tuple[float, float, str, np.ndarray]:
    """scipy's BCa bootstrap; a degenerate BCa (scipy warns, or gives NaN) becomes the percentile CI."""
    kwargs = dict(paired=paired, vectorized=True, n_resamples=n_resamples, confidence_level=confidence,
                  random_state=numpy_rng(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("error", stats.DegenerateDataWarning)
        try:
            result = stats.bootstrap(data, statistic, method="BCa", **kwargs)
            low, high = result.confidence_interval
            if np.isfinite([low, high]).all():
                return float(low), float(high), "BCa", result.bootstrap_distribution
            reason = "non-finite BCa limits"
        except stats.DegenerateDataWarning as caught:
            reason = str(caught).split(".")[0]
    warn(f"BCa interval unavailable ({reason}); using the percentile interval")
    result = stats.bootstrap(data, statistic, method="percentile", **kwargs)
    low, high = result.confidence_interval
    return float(low), float(high), f"percentile (BCa fallback: {reason})", result.bootstrap_distribution


def error_ratio(error_a: Any, error_b: Any, *, paired: bool = True, n_resamples: int = 9999, seed: Any = 0,
                confidence: float = 0.95) -> pd.DataFrame:
    """Ratio of mean errors mean(a) / mean(b) (< 1: a is closer to the target), bootstrap CI.

    p_value: permutation test of equal means (paired sign-flip, or two-sample label permutation).
    Errors must be positive (they are norms). ``attrs["draws"]``: bootstrap ratios and the permutation null.

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import error_ratio
    >>> rng = np.random.default_rng(0)
    >>> circuit, null = rng.gamma(4.0, 0.01, 20), rng.gamma(4.0, 0.02, 20)  # the null's mean error is twice as large
    >>> result = error_ratio(circuit, null, n_resamples=999, seed=1)
    >>> bool(result["ci_high"].item() < 1)
    True
    """
    a = as_vector("error_a", error_a, min_size=2, positive=True)
    b = as_vector("error_b", error_b, min_size=2, positive=True)
    confidence = check_confidence(confidence)
    n_resamples = check_int("n_resamples", n_resamples, minimum=1)
    if paired:
        a, b = as_pair(a, b)
    ratio = float(a.mean() / b.mean())
    statistic = lambda x, y, axis=-1: x.mean(axis=axis) / y.mean(axis=axis)
    low, high, used, draws = _scipy_bootstrap((a, b), statistic, paired=paired, n_resamples=n_resamples,
                                              seed=seed, confidence=confidence)
    test = (paired_permutation_test(a, b, n_resamples=n_resamples, seed=seed) if paired
            else two_sample_permutation_test(a, b, n_resamples=n_resamples, seed=seed))
    row = {"statistic": ratio, "p_value": float(test["p_value"].item()), "ci_low": low, "ci_high": high,
           "effect": ratio, "effect_name": "error ratio mean(a) / mean(b)", "n": int(a.size + (0 if paired else b.size)),
           "method": f"error ratio, bootstrap {used} CI; p from {test['method'].item()}",
           "p_value_mc_se": float(test["p_value_mc_se"].item()), "confidence": confidence}
    return result_frame([row], {"bootstrap": np.asarray(draws), "null": test.attrs["draws"]["null"]})


def paired_standardised_difference(a: Any, b: Any, *, n_resamples: int = 9999, seed: Any = 0,
                                   confidence: float = 0.95) -> pd.DataFrame:
    """d_z = mean(a - b) / sd(a - b) (Cohen 1988), BCa bootstrap CI; p from the paired t-test.

    A zero-variance difference gives status "zero_variance" (d_z undefined) instead of NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import paired_standardised_difference
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(0, 1, 30)
    >>> result = paired_standardised_difference(a + 1 + rng.normal(0, 0.5, 30), a, n_resamples=999, seed=1)
    >>> bool(result["statistic"].item() > 1), bool(result["p_value"].item() < 0.001)
    (True, True)
    """
    a, b = as_pair(a, b, min_size=3)
    confidence = check_confidence(confidence)
    d = a - b
    base = {"n": int(d.size), "effect_name": "d_z (mean / sd of differences)", "confidence": confidence}
    if d.std(ddof=1) == 0:
        return result_frame([{**base, "statistic": float(d.mean()), "p_value": np.nan, "ci_low": np.nan,
                              "ci_high": np.nan, "effect": np.nan, "method": "paired standardised difference",
                              "status": "zero_variance", "reason": "all differences are equal: d_z undefined"}])
    d_z = float(d.mean() / d.std(ddof=1))
    statistic = lambda x, axis=-1: x.mean(axis=axis) / x.std(axis=axis, ddof=1)
    low, high, used, draws = _scipy_bootstrap((d,), statistic, paired=False, n_resamples=n_resamples,
                                              seed=seed, confidence=confidence)
    t_test = stats.ttest_rel(a, b)
    row = {**base, "statistic": d_z, "p_value": float(t_test.pvalue), "ci_low": low, "ci_high": high,
           "effect": d_z, "method": f"paired standardised difference d_z, bootstrap {used} CI; p from paired t-test",
           "t": float(t_test.statistic)}
    return result_frame([row], {"bootstrap": np.asarray(draws)})


def cliffs_delta(x: Any, y: Any, *, n_resamples: int = 9999, seed: Any = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Cliff's delta P(X > Y) - P(X < Y) (Cliff 1993), bootstrap CI; p from the Mann-Whitney U test.

    Examples
    --------
    >>> from astrostats.stats import cliffs_delta
    >>> result = cliffs_delta([3, 4, 5, 6], [1, 2, 3, 4], n_resamples=999, seed=0)
    >>> result["statistic"].item()
    0.75
    """
    x = as_vector("x", x, min_size=2)
    y = as_vector("y", y, min_size=2)
    confidence = check_confidence(confidence)
    delta = cliffs_delta_value(x, y)
    statistic = lambda u, v, axis=-1: 2 * stats.mannwhitneyu(u, v, axis=axis, method="asymptotic").statistic \
        / (u.shape[axis] * v.shape[axis]) - 1
    low, high, used, draws = _scipy_bootstrap((x, y), statistic, paired=False, n_resamples=n_resamples,
                                              seed=seed, confidence=confidence)
    test = stats.mannwhitneyu(x, y, alternative="two-sided")
    row = {"statistic": delta, "p_value": float(test.pvalue), "ci_low": low, "ci_high": high, "effect": delta,
           "effect_name": "Cliff's delta", "n": int(x.size + y.size), "n_x": int(x.size), "n_y": int(y.size),
           "method": f"Cliff's delta, bootstrap {used} CI; p from Mann-Whitney U", "confidence": confidence}
    return result_frame([row], {"bootstrap": np.asarray(draws)})


def equivalence_test(a: Any, b: Any = None, *, delta: float, paired: bool = True, alpha: float = 0.05) -> pd.DataFrame:
    """TOST (Schuirmann 1987) of H0: |mean(a - b)| >= delta against H1: |mean(a - b)| < delta.

    p_value = max of the two one-sided t-test p-values (statsmodels ``ttost_paired`` / ``ttost_ind``,
    Welch). ``ci_low/high``: the (1 - 2 alpha) interval, which lies inside (-delta, delta) exactly when
    p < alpha. ``equivalent`` = p < alpha. b=None tests a (e.g. differences) against zero.

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import equivalence_test
    >>> differences = np.random.default_rng(0).normal(0.0, 0.1, 50)
    >>> bool(equivalence_test(differences, delta=0.1)["p_value"].item() < 0.05)
    True
    """
    delta = check_float("delta", delta, minimum=0.0, strict=True)
    alpha = check_float("alpha", alpha, minimum=0.0, strict=True, maximum=0.5)
    if b is None:
        a = as_vector("a", a, min_size=3)
        b, paired = np.zeros_like(a), True
    elif paired:
        a, b = as_pair(a, b, min_size=3)
    else:
        a, b = as_vector("a", a, min_size=3), as_vector("b", b, min_size=3)
    diff = float(a.mean() - b.mean())
    spread = (a - b).std(ddof=1) if paired else max(a.std(ddof=1), b.std(ddof=1))
    if spread == 0:  # no t-test exists: decided by the mean difference alone, and said so
        inside = abs(diff) < delta
        kind = "paired" if paired else "Welch"
        return result_frame([{"statistic": diff, "p_value": 0.0 if inside else 1.0, "ci_low": diff,
                              "ci_high": diff, "effect": diff, "effect_name": "mean difference",
                              "n": int(a.size if paired else a.size + b.size),
                              "method": f"TOST {kind} (zero variance: decided by the mean alone)",
                              "delta": delta, "equivalent": inside, "status": "zero_variance",
                              "reason": "all differences are equal" if paired else "both samples are constant"}])
    if paired:
        p, lower, upper = weightstats.ttost_paired(a, b, -delta, delta)
        interval = stats.ttest_rel(a, b).confidence_interval(1 - 2 * alpha)
        method = "TOST paired t-tests"
    else:
        p, lower, upper = weightstats.ttost_ind(a, b, -delta, delta, usevar="unequal")
        interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(1 - 2 * alpha)
        method = "TOST Welch t-tests"
    row = {"statistic": diff, "p_value": float(p), "ci_low": float(interval.low), "ci_high": float(interval.high),
           "effect": diff, "effect_name": "mean difference", "n": int(a.size if paired else a.size + b.size),
           "method": method, "delta": delta, "alpha": alpha, "equivalent": bool(p < alpha),
           "p_value_lower": float(lower[1]), "p_value_upper": float(upper[1]),
           "ci_confidence": 1 - 2 * alpha}
    return result_frame([row])


def tost_p_value(estimate: float, se: float, df: float, *, low: float, high: float) -> float:
    """TOST p-value of H0: theta <= low or theta >= high from an estimate, its standard error and t degrees of
    freedom (e.g. a cluster-robust slope): max of the two one-sided t-test p-values (Schuirmann 1987).
    Equivalence at level a exactly when the (1 - 2a) t-interval lies inside (low, high).

    Examples
    --------
    >>> round(tost_p_value(0.5, 0.02, 10, low=0.4, high=0.6), 5)
    0.00027
    """
    if not (se > 0 and df > 0 and np.isfinite(estimate)):
        return float("nan")
    return float(max(stats.t.sf((estimate - low) / se, df), stats.t.cdf((estimate - high) / se, df)))


def tost_bootstrap_p_value(draws: Any, *, low: float, high: float) -> float:
    """TOST p-value from bootstrap draws: the smallest a at which the percentile (1 - 2a) interval lies inside
    (low, high), as (k + 1) / (B + 1) for the larger tail beyond a margin (never zero).

    Examples
    --------
    >>> tost_bootstrap_p_value(np.linspace(0.9, 1.2, 99), low=0.85, high=1.15)
    0.18
    """
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if draws.size < 20:
        return float("nan")
    below, above = int((draws <= low).sum()), int((draws >= high).sum())
    return float((max(below, above) + 1) / (draws.size + 1))
