"""Resampling inference: sign-flip and label permutation tests, hierarchical bootstrap, percentile/BCa CIs.

Conventions follow ``scipy.stats.permutation_test`` / ``scipy.stats.bootstrap``: Monte-Carlo p-values are
(k + 1) / (B + 1) and never zero (Phipson & Smyth 2010), reported with their Monte-Carlo standard error;
an exact enumeration replaces sampling when every resample can be listed; BCa falls back to the
percentile interval, with a :class:`StatsWarning`, where it is undefined.

Speed: a sign-flip statistic is a sum of +-d_i. Differences are taken eight at a time; a table holds
the 256 signed sums of each block, and a random byte per block picks one, so B permutations of n
differences cost B * n / 8 table look-ups instead of B * n multiply-adds (benchmarks/bench_permutation.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from astrostats.stats._common import (as_pair, as_vector, check_alternative, check_columns, check_confidence,
                                      monte_carlo_p, result_frame, warn)
from astrostats.validation import check_choice, check_int, fail
from astrostats.seeding import numpy_rng

#: bit k of byte b -> +1 if set, else -1 (little-endian within a block of eight differences)
_SIGNS = np.where((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1, 1.0, -1.0)
_CHUNK_BYTES = 1 << 22  # look-ups per chunk: bounds memory to ~32 MB of float64


def _block_table(d: np.ndarray) -> np.ndarray:
    """(blocks * 256,) signed sums of each block of eight differences, zero-padded."""
    blocks = -(-d.size // 8)
    padded = np.zeros(blocks * 8)
    padded[:d.size] = d
    return (padded.reshape(blocks, 1, 8) * _SIGNS[None]).sum(-1).ravel()


def _sums_from_bytes(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Signed sums for sign patterns given as bytes, codes (B, blocks) uint8."""
    offsets = (np.arange(codes.shape[1], dtype=np.int64) * 256)[None, :]
    return np.take(table, codes.astype(np.int64) + offsets).sum(axis=1)


def sign_flip_sums(differences: Any, n_resamples: int = 9999, seed: Any = 0) -> tuple[np.ndarray, bool]:
    """Null distribution of sum(s_i d_i) under random signs s; exact (all 2^n patterns) when 2^n <= B.

    Returns (sums, exact). Pure numpy, chunked to bound memory; same seed -> same draws.

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import sign_flip_sums
    >>> sums, exact = sign_flip_sums(np.array([0.5, 1.0, 1.5]))
    >>> exact, sorted(sums.round(1).tolist())
    (True, [-3.0, -2.0, -1.0, 0.0, 0.0, 1.0, 2.0, 3.0])
    """
    d = as_vector("differences", differences)
    n_resamples = check_int("n_resamples", n_resamples, minimum=1)
    table = _block_table(d)
    blocks = table.size // 256
    if d.size < 63 and 2 ** d.size <= n_resamples:
        codes = np.arange(2 ** d.size, dtype="<u8").view(np.uint8).reshape(-1, 8)[:, :blocks]
        return _sums_from_bytes(table, codes), True
    rng = numpy_rng(seed)
    rows_per_chunk = max(1, _CHUNK_BYTES // blocks)
    sums = np.empty(n_resamples)
    for start in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - start)
        codes = np.frombuffer(rng.bytes(rows * blocks), dtype=np.uint8).reshape(rows, blocks)
        sums[start:start + rows] = _sums_from_bytes(table, codes)
    return sums, False


def _count_extreme(null: np.ndarray, observed: float, alternative: str, symmetric: bool, scale: float) -> tuple[int, int]:
    """(k, B) for the p-value; ties within rounding (relative 1e-12) count as extreme."""
    tol = 1e-12 * max(scale, 1e-300)
    if alternative == "greater":
        return int((null >= observed - tol).sum()), 0
    if alternative == "less":
        return int((null <= observed + tol).sum()), 0
    if symmetric:
        return int((np.abs(null) >= abs(observed) - tol).sum()), 0
    return int((null >= observed - tol).sum()), int((null <= observed + tol).sum())


def _p_value(null: np.ndarray, observed: float, alternative: str, exact: bool, symmetric: bool,
             scale: float) -> tuple[float, float]:
    k_hi, k_lo = _count_extreme(null, observed, alternative, symmetric, scale)
    size = null.size
    if exact:  # the identity pattern is among the enumerated ones: p = k / B, no MC error
        if alternative == "two-sided" and not symmetric:
            return min(1.0, 2 * min(k_hi, k_lo) / size), 0.0
        return k_hi / size, 0.0
    if alternative == "two-sided" and not symmetric:
        p_hi, _ = monte_carlo_p(k_hi, size)
        p_lo, _ = monte_carlo_p(k_lo, size)
        p = min(1.0, 2 * min(p_hi, p_lo))
        return p, math.sqrt(p * (1 - p) / size)
    return monte_carlo_p(k_hi, size)


def paired_differences(a: Any, b: Any = None) -> np.ndarray:
    """a - b (or a alone when b is None) as checked float64, refusing differences that overflow float64."""
    if b is None:
        a = as_vector("a", a, min_size=2)
        b = np.zeros_like(a)
    a, b = as_pair(a, b)
    with np.errstate(over="ignore"):
        d = a - b
    if not np.isfinite(d).all():
        raise fail("a - b", "differences that float64 can hold", "an overflow to infinity")
    return d


def paired_permutation_test(a: Any, b: Any = None, *, n_resamples: int = 9999, seed: Any = 0,
                            alternative: str = "two-sided", confidence: float = 0.95) -> pd.DataFrame:
    """Sign-flip permutation test of H0: the paired differences a - b are symmetric about zero.

    statistic: mean difference; p = (k + 1) / (B + 1) over B random sign patterns (exact enumeration when
    2^n <= B), two-sided on |mean|; ``p_value_mc_se`` is its Monte-Carlo standard error. ``ci_low/high``:
    Student-t interval of the mean difference; ``effect``: d_z = mean / sd of the differences.
    ``attrs["draws"]["null"]``: the permutation null of the mean difference. Pass b=None to test a itself.

    >>> paired_permutation_test([1.2, 0.9, 1.4, 1.1], [1.0, 1.0, 1.0, 1.0], seed=0)["method"].item()
    'paired sign-flip permutation (exact)'

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import paired_permutation_test
    >>> rng = np.random.default_rng(0)
    >>> circuit, null = rng.gamma(2.0, 0.05, 30), rng.gamma(2.0, 0.05, 30) + 0.2
    >>> result = paired_permutation_test(circuit, null, seed=1)
    >>> bool(result["p_value"].item() < 0.001), result["status"].item()
    (True, 'ok')
    """
    d = paired_differences(a, b)
    alternative = check_alternative(alternative)
    confidence = check_confidence(confidence)
    n = d.size
    # the test is scale-free: huge differences (1e308) are tested as d / max|d|, so their sums cannot overflow
    unit = float(np.abs(d).max()) if np.abs(d).max() > 1e150 else 1.0
    sums, exact = sign_flip_sums(d / unit, n_resamples, seed)
    mean_unit = float((d / unit).mean())
    p, mc_se = _p_value(sums / n, mean_unit, alternative, exact, symmetric=True, scale=float(np.abs(d / unit).mean()))
    null = sums / n * unit
    mean = mean_unit * unit
    sd = float((d / unit).std(ddof=1)) * unit
    row = {"statistic": mean, "p_value": p, "n": n, "effect_name": "d_z (mean / sd of differences)",
           "method": f"paired sign-flip permutation ({'exact' if exact else 'Monte Carlo'})",
           "alternative": alternative, "n_resamples": int(null.size), "p_value_mc_se": mc_se}
    if sd > 0:
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
        row.update(ci_low=mean - half, ci_high=mean + half, effect=mean / sd, status="ok", reason="")
    else:
        row.update(ci_low=mean, ci_high=mean, effect=np.nan, status="zero_variance",
                   reason="all differences are equal: d_z undefined, CI degenerate")
    return result_frame([row], {"null": null})


def paired_mean_test(a: Any, b: Any = None, *, n_resamples: int = 9999, seed: Any = 0,
                     alternative: str = "two-sided", confidence: float = 0.95) -> pd.DataFrame:
    """Bootstrap-t test of H0: the mean of the paired differences a - b is zero (no symmetry assumed).

    The sign-flip test (:func:`paired_permutation_test`) tests symmetry about zero: on skewed differences
    whose mean is zero it rejects too often (lognormal, n = 20: 13.5 % at 5 %). Here t = mean / (sd / sqrt n)
    is referred to the bootstrap distribution of t* = (mean* - mean) / (sd* / sqrt n) over resamples of the
    differences (Efron & Tibshirani 1993, sec. 16.4; Hall 1992: second-order accurate for a mean).
    p = (k + 1) / (B + 1); two-sided: twice the smaller tail (the t* law need not be symmetric).
    ``ci_low/high``: the bootstrap-t interval of the mean. ``attrs["draws"]["null"]``: the t* draws.

    Examples
    --------
    >>> result = paired_mean_test([1.3, 0.9, 1.6, 1.2, 1.4], [1.0, 1.0, 1.0, 1.0, 1.0], n_resamples=999, seed=0)
    >>> result["method"].item(), bool(result["p_value"].item() < 0.2)
    ('paired bootstrap-t test of mean difference = 0', True)
    """
    d = paired_differences(a, b)
    alternative = check_alternative(alternative)
    confidence = check_confidence(confidence)
    n_resamples = check_int("n_resamples", n_resamples, minimum=19)
    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    row = {"statistic": mean, "n": n, "effect_name": "d_z (mean / sd of differences)", "alternative": alternative,
           "method": "paired bootstrap-t test of mean difference = 0", "n_resamples": n_resamples}
    if sd == 0:
        p = 1.0 if mean == 0 else 0.0
        return result_frame([{**row, "p_value": p, "p_value_mc_se": 0.0, "ci_low": mean, "ci_high": mean,
                              "effect": np.nan, "status": "zero_variance",
                              "reason": "all differences are equal: decided by the mean alone"}], {"null": np.zeros(0)})
    rng = numpy_rng(seed)
    null = np.empty(n_resamples)
    rows_per_chunk = max(1, _CHUNK_BYTES // n)
    for start in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - start)
        sample = d[rng.integers(0, n, (rows, n))]
        spread = sample.std(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            null[start:start + rows] = (sample.mean(axis=1) - mean) / (spread / math.sqrt(n))
    null = null[np.isfinite(null)]  # a resample of identical values has no t
    t = mean / (sd / math.sqrt(n))
    p_high, _ = monte_carlo_p(int((null >= t).sum()), null.size)
    p_low, _ = monte_carlo_p(int((null <= t).sum()), null.size)
    p = {"greater": p_high, "less": p_low, "two-sided": min(1.0, 2 * min(p_high, p_low))}[alternative]
    tail = (1 - confidence) / 2
    upper_t, lower_t = np.quantile(null, [1 - tail, tail])
    return result_frame([{**row, "p_value": p, "p_value_mc_se": math.sqrt(p * (1 - p) / null.size),
                          "ci_low": mean - upper_t * sd / math.sqrt(n), "ci_high": mean - lower_t * sd / math.sqrt(n),
                          "effect": mean / sd, "status": "ok", "reason": ""}], {"null": null})


def two_sample_permutation_test(x: Any, y: Any, *, n_resamples: int = 9999, seed: Any = 0,
                                alternative: str = "two-sided", confidence: float = 0.95) -> pd.DataFrame:
    """Label-permutation test of H0: x and y come from one distribution; statistic mean(x) - mean(y).

    Two-sided p = 2 min(p_greater, p_less) capped at 1 (scipy's convention, since the null need not be
    symmetric). ``ci_low/high``: Welch interval of the mean difference; ``effect``: Cliff's delta.

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import two_sample_permutation_test
    >>> rng = np.random.default_rng(0)
    >>> result = two_sample_permutation_test(rng.normal(0, 1, 40), rng.normal(0, 1, 40), seed=1)
    >>> bool(result["p_value"].item() > 0.05)
    True
    """
    x = as_vector("x", x, min_size=2)
    y = as_vector("y", y, min_size=2)
    n_resamples = check_int("n_resamples", n_resamples, minimum=1)
    alternative = check_alternative(alternative)
    confidence = check_confidence(confidence)
    rng = numpy_rng(seed)
    pooled = np.concatenate([x, y])
    total, size = pooled.sum(), pooled.size
    observed = float(x.mean() - y.mean())
    null = np.empty(n_resamples)
    rows_per_chunk = max(1, _CHUNK_BYTES // size)
    for start in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - start)
        order = rng.random((rows, size)).argpartition(x.size - 1, axis=1)[:, :x.size]
        sum_x = pooled[order].sum(axis=1)
        null[start:start + rows] = sum_x / x.size - (total - sum_x) / y.size
    p, mc_se = _p_value(null, observed, alternative, exact=False, symmetric=False,
                        scale=float(np.abs(pooled).mean()))
    welch = stats.ttest_ind(x, y, equal_var=False)
    interval = welch.confidence_interval(confidence)
    degenerate = x.std() == 0 and y.std() == 0
    row = {"statistic": observed, "p_value": p, "n": size, "n_x": x.size, "n_y": y.size,
           "effect": cliffs_delta_value(x, y), "effect_name": "Cliff's delta",
           "ci_low": float(interval.low) if not degenerate else observed,
           "ci_high": float(interval.high) if not degenerate else observed,
           "method": "two-sample label permutation (Monte Carlo)", "alternative": alternative,
           "n_resamples": n_resamples, "p_value_mc_se": mc_se,
           "status": "zero_variance" if degenerate else "ok",
           "reason": "both samples constant: Welch CI degenerate" if degenerate else ""}
    return result_frame([row], {"null": null})


def cliffs_delta_value(x: np.ndarray, y: np.ndarray) -> float:
    """delta = P(X > Y) - P(X < Y) = 2 U / (n_x n_y) - 1, from the Mann-Whitney U (ties count half)."""
    u = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").statistic
    return float(2 * u / (x.size * y.size) - 1)


# ---------------------------------------------------------------- bootstrap intervals

def bootstrap_interval(draws: Any, estimate: float, *, confidence: float = 0.95, method: str = "bca",
                       jackknife: Any = None) -> tuple[float, float, str]:
    """(low, high, method used) from bootstrap draws: percentile, or BCa (Efron 1987) given jackknife values.

    BCa needs finite draws on both sides of the estimate and non-constant jackknife values; otherwise it
    falls back to the percentile interval with a :class:`StatsWarning`, and the returned method says so.
    Infinite draws (e.g. an unreachable m_required) are allowed: quantiles use the inverted CDF.

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import bootstrap_interval
    >>> draws = np.random.default_rng(0).normal(1.0, 0.1, 4000)
    >>> low, high, method = bootstrap_interval(draws, 1.0, method="percentile")
    >>> round(low, 1), round(high, 1), method
    (0.8, 1.2, 'percentile')
    """
    method = check_choice("method", method, ("bca", "percentile"))
    confidence = check_confidence(confidence)
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 1 or draws.size < 2 or np.isnan(draws).any():
        raise fail("draws", "a 1-D array of >= 2 non-NaN bootstrap draws", f"shape {draws.shape}")
    tail = (1 - confidence) / 2
    quantiles = np.array([tail, 1 - tail])
    used = "percentile"
    if method == "bca":
        reason = _bca_problem(draws, estimate, jackknife)
        if reason:
            warn(f"BCa interval unavailable ({reason}); using the percentile interval")
            used = f"percentile (BCa fallback: {reason})"
        else:
            jack = np.asarray(jackknife, dtype=np.float64)
            z0 = special.ndtri((draws < estimate).mean() + 0.5 * (draws == estimate).mean())
            spread = jack.mean() - jack
            acceleration = (spread ** 3).sum() / (6 * ((spread ** 2).sum()) ** 1.5)
            z = special.ndtri(quantiles)
            quantiles = special.ndtr(z0 + (z0 + z) / (1 - acceleration * (z0 + z)))
            used = "bca"
    finite = np.isfinite(draws).all()
    low, high = np.quantile(draws, quantiles, method="linear" if finite else "inverted_cdf")
    return float(low), float(high), used


def _bca_problem(draws: np.ndarray, estimate: float, jackknife: Any) -> str:
    if jackknife is None:
        return "no jackknife values"
    jack = np.asarray(jackknife, dtype=np.float64)
    if not np.isfinite(draws).all() or not np.isfinite(estimate):
        return "non-finite draws"
    if jack.size < 3 or not np.isfinite(jack).all() or np.ptp(jack) == 0:
        return "degenerate jackknife (fewer than 3 clusters, non-finite or constant values)"
    below = (draws < estimate).mean()
    if below == 0 or below == 1:
        return "all draws on one side of the estimate"
    return ""


# ---------------------------------------------------------------- hierarchical bootstrap

def _uniform_counts(rng: np.random.Generator, n_units: int, n_resamples: int) -> np.ndarray:
    """(B, n) counts of an n-out-of-n resample of n units: Multinomial(n, uniform), tallied from n uniform picks
    per resample (the same law as ``rng.multinomial``, several times faster for many units)."""
    picks = rng.integers(0, n_units, size=(n_resamples, n_units)) + n_units * np.arange(n_resamples)[:, None]
    return np.bincount(picks.ravel(), minlength=n_resamples * n_units).reshape(n_resamples, n_units)


def hierarchical_weights(table: pd.DataFrame, clusters: Sequence[str], n_resamples: int, seed: Any = 0, *,
                         design: str = "nested", strata: str | None = None) -> np.ndarray:
    """(B, rows) multiplicities of a two-stage cluster bootstrap over ``clusters`` (outer first).

    nested: resample the outer units (e.g. sequences), then, within each drawn copy, the inner units
      present in it (e.g. feature seeds). The inner counts of a unit drawn c times are one
      Multinomial(c * n_inner, uniform) draw, which is what c independent inner resamples add up to.
    crossed: resample each cluster column independently and multiply the counts (Owen's pigeonhole bootstrap,
      for crossed factors such as sequences x feature draws shared by all sequences; mildly conservative).
      ``strata`` (crossed only): resample the inner units independently within each stratum, e.g. the
      feature seeds of each m when every (m, seed) is its own draw.
    Rows sharing all cluster labels move together. One column gives the ordinary cluster bootstrap.

    Examples
    --------
    >>> import pandas as pd
    >>> from astrostats.stats import hierarchical_weights
    >>> table = pd.DataFrame({"sequence_id": [0, 0, 1, 1], "seed": [0, 1, 0, 1]})
    >>> weights = hierarchical_weights(table, ["sequence_id", "seed"], n_resamples=5, seed=0)
    >>> weights.shape, bool((weights.sum(axis=1) == 4).all())
    ((5, 4), True)
    """
    design = check_choice("design", design, ("nested", "crossed"))
    n_resamples = check_int("n_resamples", n_resamples, minimum=1)
    clusters = list(clusters)
    if not 1 <= len(clusters) <= 2:
        raise fail("clusters", "one or two column names (outer first)", clusters)
    check_columns(table, clusters)
    rng = numpy_rng(seed)
    outer_codes, outer_units = pd.factorize(table[clusters[0]], sort=True)
    outer_counts = _uniform_counts(rng, outer_units.size, n_resamples)
    if len(clusters) == 1:
        return outer_counts[:, outer_codes].astype(np.float64)
    inner_codes, inner_units = pd.factorize(table[clusters[1]], sort=True)
    if design == "crossed":
        if strata is None:
            inner_counts = _uniform_counts(rng, inner_units.size, n_resamples)
            return (outer_counts[:, outer_codes] * inner_counts[:, inner_codes]).astype(np.float64)
        check_columns(table, [strata])
        weights = outer_counts[:, outer_codes].astype(np.float64)
        stratum_codes = pd.factorize(table[strata], sort=True)[0]
        for stratum in range(stratum_codes.max() + 1):
            rows = np.flatnonzero(stratum_codes == stratum)
            present, local = np.unique(inner_codes[rows], return_inverse=True)
            counts = rng.multinomial(present.size, np.full(present.size, 1 / present.size), size=n_resamples)
            weights[:, rows] *= counts[:, local]
        return weights
    # inner counts of a unit drawn c times: Multinomial(c * k, uniform) over its k present inner units, drawn for
    # every (resample, unit) at once as the tallies of c * k uniform picks
    local = np.zeros(len(table), dtype=np.int64)
    present = np.zeros(outer_units.size, dtype=np.int64)
    for unit in range(outer_units.size):
        rows = np.flatnonzero(outer_codes == unit)
        kinds, local[rows] = np.unique(inner_codes[rows], return_inverse=True)
        present[unit] = kinds.size
    picks = (outer_counts * present).ravel()
    cell = np.repeat(np.arange(picks.size), picks)
    choice = (rng.random(cell.size) * present[cell % outer_units.size]).astype(np.int64)
    widest = int(present.max())
    counts = np.bincount(cell * widest + choice, minlength=picks.size * widest)
    return counts.reshape(n_resamples, outer_units.size, widest)[:, outer_codes, local].astype(np.float64)


def rescaled_cluster_weights(n_units: int, n_resamples: int, seed: Any = 0, *,
                             strata: np.ndarray | None = None) -> np.ndarray:
    """(B, n_units) Rao-Wu rescaled bootstrap weights: n_h - 1 of n_h units per stratum, weighted n_h / (n_h - 1).

    The ordinary n-out-of-n cluster bootstrap understates the variance of a weighted mean by (n_h - 1) / n_h
    (12 % with 8 feature seeds per m); drawing n_h - 1 units and rescaling makes it unbiased for linear
    statistics (Rao & Wu 1988, JASA 83: 231; McCarthy & Snowden 1985). A stratum with a single unit cannot be
    resampled and keeps weight 1. ``strata``: the stratum of each unit (None: one stratum).

    Examples
    --------
    >>> from astrostats.stats import rescaled_cluster_weights
    >>> weights = rescaled_cluster_weights(4, n_resamples=3, seed=0)
    >>> weights.shape, weights.sum(axis=1).round(6).tolist()
    ((3, 4), [4.0, 4.0, 4.0])
    """
    n_units = check_int("n_units", n_units, minimum=1)
    n_resamples = check_int("n_resamples", n_resamples, minimum=1)
    rng = numpy_rng(seed)
    strata = np.zeros(n_units, dtype=np.int64) if strata is None else np.asarray(strata)
    if strata.shape != (n_units,):
        raise fail("strata", f"one stratum per unit ({n_units})", f"shape {strata.shape}")
    weights = np.ones((n_resamples, n_units))
    _, codes, sizes = np.unique(strata, return_inverse=True, return_counts=True)
    grouped = np.argsort(codes, kind="stable")  # the units stratum by stratum, each stratum's in unit order
    for size in np.unique(sizes[sizes >= 2]):  # all strata of one size at once
        chosen = np.flatnonzero(sizes == size)
        cells = n_resamples * chosen.size
        # n_h - 1 draws with replacement per (resample, stratum), counted per unit (a uniform multinomial)
        picks = rng.integers(0, size, (cells, size - 1)) + (np.arange(cells) * size)[:, None]
        counts = np.bincount(picks.ravel(), minlength=cells * size).reshape(n_resamples, chosen.size * size)
        weights[:, grouped[np.isin(codes[grouped], chosen)]] = counts * (size / (size - 1))
    return weights


def hierarchical_bootstrap(table: pd.DataFrame, statistic: str | Callable[[pd.DataFrame], float] = "mean", *,
                           value_col: str = "value", clusters: Sequence[str] = ("sequence_id", "seed"),
                           design: str = "nested", n_resamples: int = 2000, seed: Any = 0,
                           confidence: float = 0.95, method: str = "bca") -> pd.DataFrame:
    """Two-stage cluster bootstrap CI of a statistic of a tidy table (sequences, then feature seeds).

    statistic: "mean" (weighted means, fully vectorised) or a callable(frame) -> float evaluated on each
    resampled frame (rows repeated by their multiplicity). BCa acceleration comes from the leave-one-
    outer-unit-out jackknife; where BCa is undefined the percentile interval is used with a warning.
    p_value: the bootstrap test of H0: statistic = 0, 2 min(P*(<=0), P*(>=0)), reported for orientation.
    ``attrs["draws"]["bootstrap"]`` holds the B draws.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from astrostats.stats import hierarchical_bootstrap
    >>> rng = np.random.default_rng(0)
    >>> table = pd.DataFrame({"sequence_id": np.repeat(np.arange(8), 4), "seed": np.tile(np.arange(4), 8),
    ...                       "value": rng.normal(1.0, 0.1, 32)})
    >>> result = hierarchical_bootstrap(table, n_resamples=500, seed=1)
    >>> bool(result["ci_low"].item() < 1.0 < result["ci_high"].item())
    True
    """
    clusters = list(clusters)
    check_columns(table, clusters + ([value_col] if statistic == "mean" else []))
    if statistic == "mean":
        values = as_vector(value_col, table[value_col].to_numpy(dtype=np.float64, na_value=np.nan))
        function: Callable[[pd.DataFrame], float] = lambda frame: float(frame[value_col].mean())
    elif callable(statistic):
        function = statistic
    else:
        raise fail("statistic", "'mean' or a callable(frame) -> float", statistic)
    weights = hierarchical_weights(table, clusters, n_resamples, seed, design=design)
    estimate = float(function(table))
    if statistic == "mean":
        draws = weights @ values / weights.sum(axis=1)
    else:
        positions = np.arange(len(table))
        draws = np.array([float(function(table.iloc[np.repeat(positions, w.astype(np.int64))])) for w in weights])
    outer = table[clusters[0]]
    units = pd.unique(outer)
    jackknife = np.array([float(function(table[outer != unit])) for unit in units]) if units.size >= 3 else None
    low, high, used = bootstrap_interval(draws, estimate, confidence=confidence, method=method, jackknife=jackknife)
    p = min(1.0, 2 * min(((draws <= 0).sum() + 1) / (draws.size + 1), ((draws >= 0).sum() + 1) / (draws.size + 1)))
    row = {"statistic": estimate, "p_value": p, "ci_low": low, "ci_high": high, "effect": estimate,
           "effect_name": "statistic", "n": len(table), "n_clusters": int(units.size),
           "method": f"hierarchical bootstrap ({design}: {' > '.join(clusters)}), {used}",
           "confidence": confidence, "n_resamples": int(draws.size),
           "status": "ok", "reason": ""}
    if np.ptp(draws) == 0:
        row.update(status="zero_variance", reason="every bootstrap draw is equal: CI degenerate")
    return result_frame([row], {"bootstrap": draws})
