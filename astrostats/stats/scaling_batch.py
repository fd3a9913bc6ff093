"""Scaling-law fits for many data sets that share one layout, as array operations (the calibration, and
the bootstrap of :func:`astrostats.stats.scaling.fit_scaling_law`).

:class:`FitDesign` holds everything about a table but its errors; :func:`power_law_batch`,
:func:`power_law_bootstrap` and :func:`floor_test_batch` run the estimators of the single fit on a stack of
log errors. The floor test itself (:func:`floor_f_test`) and the floor model's starting values
(:func:`floor_starts`) are shared with the single fit, so both paths test a floor the same way. Tests hold
these to statsmodels and scipy.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from astrostats.stats._common import check_columns, check_confidence, t_over_z
from astrostats.stats.resampling import rescaled_cluster_weights
from astrostats.validation import check_int, fail
from astrostats.seeding import numpy_rng

RATE = 0.5  # the random-feature Monte-Carlo rate
CHUNK_ELEMENTS = 1 << 22  # bootstrap weights held at once by the batched path (32 MB of float64)
F_ZERO = 1e-8  # a floor F statistic below this is rounding: the floor sits on its boundary E_inf = 0
FLOOR_START_SHARES = (0.0, 0.3, 0.6, 0.9)  # E_inf starts as these shares of the smallest per-m mean error


def prepare(table: pd.DataFrame, m_col: str, value_col: str, cluster_cols: Sequence[str]) -> pd.DataFrame:
    """The checked rows of a scaling table: m, log m, log error, error and the cluster labels."""
    check_columns(table, [m_col, value_col, *cluster_cols])
    m = pd.to_numeric(table[m_col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    value = pd.to_numeric(table[value_col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(m).all():
        raise fail(m_col, "finite m for every row (filter out m-free circuits first)", f"{int((~np.isfinite(m)).sum())} missing or non-finite")
    if not np.isfinite(value).all():
        raise fail(value_col, "finite errors (no NaN or inf)", f"{int((~np.isfinite(value)).sum())} non-finite of {value.size}")
    if (m <= 0).any():
        raise fail(m_col, "positive m", float(m.min()))
    if (value <= 0).any():
        raise fail(value_col, "positive errors (a log-log fit needs them)", float(value.min()))
    for column in cluster_cols:
        if table[column].isna().any():
            raise fail(column, "no missing cluster labels", f"{int(table[column].isna().sum())} missing")
    levels = np.unique(m)
    if levels.size < 3:
        raise fail(m_col, "at least 3 distinct m values for a scaling fit", levels.tolist())
    prepared = pd.DataFrame({"m": m, "log_m": np.log(m), "log_value": np.log(value), "value": value})
    for column in cluster_cols:
        prepared[column] = table[column].to_numpy()
    return prepared.reset_index(drop=True)


@dataclass(frozen=True)
class FitDesign:
    """Everything about a scaling table but its errors: widths m, sequences, feature draws, clusters.

    Data sets with the same rows (simulated tables, or one table and its resamples) share a design, so the
    power law of all of them is a few matrix products on a stack of log errors (:func:`power_law_batch`).
    The draw level holds the bootstrap units of the feature draws ((m, seed) when ``seed_within_m``, strata m;
    seed labels otherwise; rows when there are no cluster columns); ``draw_codes`` is None when it cannot be
    resampled (no seed column, or one draw per stratum).
    """

    log_m: np.ndarray
    m_codes: np.ndarray
    level_log_m: np.ndarray
    sequence_codes: np.ndarray | None
    draw_codes: np.ndarray | None
    draw_strata: np.ndarray | None
    clusters: tuple
    centred_log_m: np.ndarray
    sequence_sxx: np.ndarray | None
    noise_basis: np.ndarray | None
    noise_df: int
    draw_df: float = np.inf

    @property
    def n(self) -> int:
        return int(self.log_m.size)

    @property
    def n_params(self) -> int:
        """Columns of the statsmodels design: sequence fixed effects (or a constant) and log m."""
        return (int(self.sequence_codes.max()) + 1 if self.sequence_codes is not None else 1) + 1


def _one_hot(codes: np.ndarray, size: int | None = None) -> sparse.csr_matrix:
    size = int(codes.max()) + 1 if size is None else size
    return sparse.csr_matrix((np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, size))


def _group_means(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-row mean of ``values`` (rows x columns) over the rows sharing a code."""
    indicator = _one_hot(codes)
    sums = np.asarray(indicator.T @ values)
    return (sums / np.bincount(codes)[:, None])[codes]


def _cluster_codes(data: pd.DataFrame, column: str, position: int, seed_within_m: bool) -> np.ndarray:
    """Integer cluster codes; the second level (feature seeds) is nested within m when ``seed_within_m``."""
    key = data[column].astype(str)
    if position == 1 and seed_within_m:
        key = data["m"].astype(str) + "/" + key
    return pd.factorize(key)[0]


def design_of(data: pd.DataFrame, cluster_cols: Sequence[str], seed_within_m: bool) -> FitDesign:
    x = data["log_m"].to_numpy()
    m_codes, m_levels = pd.factorize(data["m"], sort=True)
    clusters, sequence_codes, draw_codes, strata = [], None, None, None
    for position, column in enumerate(cluster_cols):
        codes = _cluster_codes(data, column, position, seed_within_m)
        if codes.max() >= 1:
            clusters.append((column, codes))
        if position == 0 and codes.max() >= 1:
            sequence_codes = codes
        if position == 1:
            draw_codes = codes
            if seed_within_m:
                strata = np.zeros(codes.max() + 1, dtype=np.int64)
                strata[codes] = m_codes
    if not cluster_cols:
        draw_codes = np.arange(x.size)  # no clusters: the rows are the units
    if draw_codes is not None:
        sizes = np.bincount(strata) if strata is not None else np.array([draw_codes.max() + 1])
        if sizes.max() < 2:
            draw_codes = strata = None  # one draw per stratum: nothing to resample at this level
    if sequence_codes is not None:
        centred = x - _group_means(x[:, None], sequence_codes)[:, 0]
        sequence_sxx = np.bincount(sequence_codes, weights=centred ** 2)
    else:
        centred, sequence_sxx = x - x.mean(), None
    basis, noise_df = None, 0
    if sequence_codes is not None and draw_codes is not None:
        # noise model: a line per sequence plus a shift per feature draw; its residual variance is the
        # row-level noise that both the sequence and the draw level of the bootstrap would carry
        indicator = np.eye(sequence_codes.max() + 1)[sequence_codes]
        columns = np.column_stack([indicator, indicator * x[:, None]])
        columns = columns - _group_means(columns, draw_codes)
        eigenvalues, vectors = np.linalg.eigh(columns.T @ columns)
        kept = eigenvalues > 1e-10 * eigenvalues.max()
        basis = columns @ (vectors[:, kept] / np.sqrt(eigenvalues[kept]))  # orthonormal basis of the columns
        rank = int(kept.sum())
        noise_df = x.size - (draw_codes.max() + 1) - rank
        if noise_df < 1:
            basis = None
    return FitDesign(log_m=x, m_codes=m_codes, level_log_m=np.log(m_levels.to_numpy(dtype=np.float64)),
                     sequence_codes=sequence_codes, draw_codes=draw_codes, draw_strata=strata,
                     clusters=tuple(clusters), centred_log_m=centred, sequence_sxx=sequence_sxx,
                     noise_basis=basis, noise_df=noise_df, draw_df=_draw_df(centred, draw_codes, strata))


def _draw_df(centred: np.ndarray, draw_codes: np.ndarray | None, strata: np.ndarray | None) -> float:
    """Satterthwaite degrees of freedom of the feature-draw part of the slope's variance (inf: none resampled).

    A draw u moves the slope by h_u = sum of its rows' centred log m / Sxx times its shift; resampling draws
    within stratum m estimates a_m = sum_{u in m} h_u^2 sigma^2 from n_m - 1 degrees of freedom, so the sum
    rests on (sum a_m)^2 / sum a_m^2 / (n_m - 1) (Satterthwaite 1946), equal shifts' variance assumed. With the
    default design (6 widths x 4 seeds) that is about 10, not the 18 of the draws' count: the percentile
    interval, which treats the variance as known, covered 92.7 %.
    """
    if draw_codes is None:
        return np.inf
    leverage = np.bincount(draw_codes, weights=centred) / float((centred ** 2).sum())
    stratum = strata if strata is not None else np.zeros(leverage.size, dtype=np.int64)
    sizes = np.bincount(stratum)
    parts = np.bincount(stratum, weights=leverage ** 2)
    resampled = sizes >= 2
    denominator = (parts[resampled] ** 2 / (sizes[resampled] - 1)).sum()
    return float(parts[resampled].sum() ** 2 / denominator) if denominator > 0 else np.inf


def scaling_design(table: pd.DataFrame, *, m_col: str = "m", value_col: str = "value",
                   cluster_cols: Sequence[str] = ("sequence_id", "seed"), seed_within_m: bool = True) -> FitDesign:
    """The :class:`FitDesign` of a table (checked like :func:`fit_scaling_law` checks it).

    Examples
    --------
    >>> from astrostats.stats import scaling_design, simulate_scaling_table
    >>> design = scaling_design(simulate_scaling_table(0))
    >>> design.n, design.level_log_m.size
    (192, 6)
    """
    return design_of(prepare(table, m_col, value_col, list(cluster_cols)), list(cluster_cols), seed_within_m)


def power_law_batch(design: FitDesign, log_values: Any) -> dict[str, np.ndarray]:
    """The power-law fit of :func:`fit_scaling_law` for many data sets at once (rows of ``log_values``).

    Same estimator as the statsmodels path: OLS of log error on log m with sequence fixed effects, the
    pooled intercept, CRV1 cluster-robust variance (two-way V_seq + V_draw - V_both, Cameron, Gelbach &
    Miller 2011, falling back to the larger one-way variance when that is not positive; HC1 without
    clusters), small-sample factors G/(G-1) (N-1)/(N-K), and the t-test of alpha = 1/2 with min(G) - 1
    degrees of freedom. Returns arrays over data sets: alpha, log_a, alpha_se, t_vs_half, p_vs_half, df,
    ssr, one_way (which one-way variance replaced a non-positive two-way one: -1 none).

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import power_law_batch, scaling_design, simulate_scaling_table
    >>> tables = [simulate_scaling_table(seed) for seed in range(3)]
    >>> design = scaling_design(tables[0])
    >>> fits = power_law_batch(design, np.log([t["value"].to_numpy() for t in tables]))
    >>> fits["alpha"].round(1).tolist()
    [0.5, 0.5, 0.5]
    """
    y = np.atleast_2d(np.asarray(log_values, dtype=np.float64))
    if y.shape[1] != design.n:
        raise fail("log_values", f"rows of {design.n} log errors (the design's rows)", f"shape {y.shape}")
    x, centred = design.log_m, design.centred_log_m
    sxx = float((centred ** 2).sum())
    slope = y @ centred / sxx
    if design.sequence_codes is not None:
        within = y - _group_means(y.T, design.sequence_codes).T
    else:
        within = y - y.mean(axis=1, keepdims=True)
    residual = within - slope[:, None] * centred[None, :]
    scores = residual * (centred / sxx)[None, :]
    n, k = design.n, design.n_params

    def crv(codes: np.ndarray) -> tuple[np.ndarray, int]:
        groups = int(codes.max()) + 1
        sums = scores if groups == n else np.asarray(_one_hot(codes).T @ scores.T).T  # per-cluster score sums
        return groups / (groups - 1) * (n - 1) / (n - k) * (sums ** 2).sum(axis=1), groups

    one_way = np.full(y.shape[0], -1)
    if not design.clusters:
        variance = n / (n - k) * (scores ** 2).sum(axis=1)
        df = np.full(y.shape[0], n - k, dtype=np.float64)
    elif len(design.clusters) == 1:
        variance, groups = crv(design.clusters[0][1])
        df = np.full(y.shape[0], groups - 1, dtype=np.float64)
    else:
        (v0, g0), (v1, g1) = crv(design.clusters[0][1]), crv(design.clusters[1][1])
        both = pd.factorize(pd.MultiIndex.from_arrays([design.clusters[0][1], design.clusters[1][1]]))[0]
        v01, _ = crv(both)
        variance = v0 + v1 - v01
        df = np.full(y.shape[0], min(g0, g1) - 1, dtype=np.float64)
        bad = ~(variance > 0)
        choice = np.where(v1 > v0, 1, 0)
        one_way = np.where(bad, choice, -1)
        variance = np.where(bad, np.where(choice == 1, v1, v0), variance)
        df = np.where(bad, np.where(choice == 1, g1, g0) - 1.0, df)
    se = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_half = (slope + RATE) / se
    return {"alpha": -slope, "log_a": y.mean(axis=1) - slope * x.mean(), "alpha_se": se, "t_vs_half": t_half,
            "p_vs_half": 2 * stats.t.sf(np.abs(t_half), df), "df": df, "ssr": (residual ** 2).sum(axis=1),
            "one_way": one_way}


def _sequence_shrinkage(design: FitDesign, y: np.ndarray, deviations: np.ndarray) -> np.ndarray:
    """lambda in [0, 1] per data set (rows of y): removes the row noise from the resampled sequence slopes.

    The deviations c_s = b_s - alpha_hat of the sequences' own slopes carry sigma_b^2 (real differences in
    slope between sequences) plus the row noise, which the draw level already resamples (in the draw means).
    With w_s = Sxx_s / sum Sxx (the fixed-effects weights), E sum w_s^2 c_s^2 = sum w_s^2 var_b +
    sigma^2 (1 - sum w_s^2) / sum Sxx_s, sigma^2 the residual variance of the two-way noise model (a line
    per sequence plus a shift per feature draw). lambda^2 keeps the excess only (Davison & Hinkley 1997,
    sec. 3.8: shrink the upper-stage residuals so that a two-stage bootstrap does not count the lower stage
    twice; the analogue of the -V_both term of two-way cluster-robust variance).
    """
    if design.draw_codes is None or design.noise_basis is None:
        return np.ones(y.shape[0])  # no draw level (the sequences carry all the noise) or noise not estimable
    centred = y - _group_means(y.T, design.draw_codes).T
    projected = centred @ design.noise_basis
    noise = np.maximum((centred ** 2).sum(axis=1) - (projected ** 2).sum(axis=1), 0.0) / design.noise_df
    share = design.sequence_sxx / design.sequence_sxx.sum()
    observed = (deviations ** 2) @ (share ** 2)
    expected_noise = noise * (1 - (share ** 2).sum()) / design.sequence_sxx.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(observed > 0, np.sqrt(np.clip(1 - expected_noise / observed, 0.0, 1.0)), 0.0)


def bootstrap_units(design: FitDesign, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Rao-Wu weights of the feature draws (B x draws; within m) and of the sequences (B x sequences, or None)."""
    if design.draw_codes is not None:
        draws = rescaled_cluster_weights(int(design.draw_codes.max()) + 1, n_resamples, rng, strata=design.draw_strata)
    else:
        draws = np.ones((n_resamples, 1))
    sequences = None
    if design.sequence_codes is not None:
        sequences = rescaled_cluster_weights(int(design.sequence_codes.max()) + 1, n_resamples, rng)
    return draws, sequences


def alpha_draws(design: FitDesign, y: np.ndarray, draws: np.ndarray, sequences: np.ndarray | None,
                 confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """alpha* for every data set (rows of y) and resample: (sets x B draws, sets lambda).

    alpha* = the fixed-effects slope refitted with the feature draws reweighted (draws: sets x B x units),
    its deviation from the full-data slope widened by t_{df}/z with the draws' Satterthwaite df
    (:func:`_draw_df`), minus the resampled, shrunk sequence deviations (sequences: sets x B x S), widened by
    t_{S-1} / z at the confidence level: their variance rests on S - 1 degrees of freedom (8 sequences: 7),
    and a percentile interval would treat it as known (the cluster-robust t-test uses t_{min(G)-1} for the
    same reason; Hesterberg 2015 expands small-sample percentile intervals alike). Draw weights apply to every
    sequence of a draw, so the weighted sums are taken over (draw, sequence) cells: one einsum per sum for
    all data sets together (one batched matmul, no BLAS call per data set).
    """
    x = design.log_m
    unit = design.draw_codes if design.draw_codes is not None else np.zeros(design.n, dtype=np.int64)
    sequence = design.sequence_codes if design.sequence_codes is not None else np.zeros(design.n, dtype=np.int64)
    n_units, n_sequences = int(unit.max()) + 1, int(sequence.max()) + 1
    cells = _one_hot(unit * n_sequences + sequence, n_units * n_sequences)

    def per_cell(values: np.ndarray) -> np.ndarray:  # (sets, n) -> (sets, units, sequences)
        return np.asarray(cells.T @ values.T).T.reshape(values.shape[0], n_units, n_sequences)

    design_sums = per_cell(np.stack([np.ones_like(x), x, x * x]))
    count, sum_x, sum_xx = (draws @ design_sums[i] for i in range(3))  # batched BLAS, not einsum's C loops
    sum_y = draws @ per_cell(y)
    sum_xy = (draws @ per_cell(y * x[None, :]).sum(axis=2)[:, :, None])[..., 0]
    safe = np.where(count > 0, count, 1.0)
    sxx = sum_xx.sum(axis=2) - (sum_x ** 2 / safe).sum(axis=2)
    sxy = sum_xy - (sum_x * sum_y / safe).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > 1e-12 * np.maximum(sum_xx.sum(axis=2), 1e-300), sxy / sxx, np.nan)
    full_slope = y @ design.centred_log_m / float((design.centred_log_m ** 2).sum())
    if np.isfinite(design.draw_df):
        slope = full_slope[:, None] + t_over_z(confidence, design.draw_df) * (slope - full_slope[:, None])
    shrinkage = np.ones(y.shape[0])
    if design.sequence_codes is not None:
        share = design.sequence_sxx / design.sequence_sxx.sum()
        own = (y * design.centred_log_m[None, :]) @ _one_hot(design.sequence_codes).toarray() / design.sequence_sxx
        deviations = own - full_slope[:, None]
        shrinkage = _sequence_shrinkage(design, y, deviations)
        widen = t_over_z(confidence, n_sequences - 1)
        weighted = sequences * share[None, None, :]
        slope = slope + widen * (weighted @ (shrinkage[:, None] * deviations)[:, :, None])[..., 0] / weighted.sum(axis=2)
    return -slope, shrinkage


def power_law_bootstrap(design: FitDesign, log_values: Any, n_resamples: int, seeds: Sequence[Any], *,
                        confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Bootstrap draws and percentile CIs of alpha for many data sets (one seed or Generator each).

    The resampling of :func:`fit_scaling_law` (a Generator passed there and here in the same state gives
    the same draws). Returns alpha_draws (sets x B), ci_low, ci_high, shrinkage (lambda per set).

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import power_law_bootstrap, scaling_design, simulate_scaling_table
    >>> table = simulate_scaling_table(0)
    >>> result = power_law_bootstrap(scaling_design(table), np.log(table["value"].to_numpy()), 200, [1])
    >>> result["alpha_draws"].shape, bool(result["ci_low"][0] < 0.5 < result["ci_high"][0])
    ((1, 200), True)
    """
    y = np.atleast_2d(np.asarray(log_values, dtype=np.float64))
    if len(seeds) != y.shape[0]:
        raise fail("seeds", f"one seed per data set ({y.shape[0]})", len(seeds))
    n_resamples = check_int("n_resamples", n_resamples, minimum=20)
    confidence = check_confidence(confidence)
    n_units = int(design.draw_codes.max()) + 1 if design.draw_codes is not None else 1
    chunk = max(1, CHUNK_ELEMENTS // (n_resamples * n_units))  # bounds the (sets x B x units) weights
    alpha, shrinkage = np.empty((y.shape[0], n_resamples)), np.empty(y.shape[0])
    for start in range(0, y.shape[0], chunk):
        units = [bootstrap_units(design, n_resamples, numpy_rng(seed)) for seed in seeds[start:start + chunk]]
        draws = np.stack([unit[0] for unit in units])
        sequences = np.stack([unit[1] for unit in units]) if design.sequence_codes is not None else None
        alpha[start:start + chunk], shrinkage[start:start + chunk] = alpha_draws(
            design, y[start:start + chunk], draws, sequences, confidence)
    tail = (1 - confidence) / 2
    low, high = np.quantile(alpha, [tail, 1 - tail], axis=1)
    return {"alpha_draws": alpha, "ci_low": low, "ci_high": high, "shrinkage": shrinkage}


def floor_starts(log_a: Any, alpha: Any, smallest: Any) -> list[np.ndarray]:
    """Starting values (log A, alpha, E_inf) of the floor model, one per share in FLOOR_START_SHARES: the
    power law's constant and rate (rate raised with the share), E_inf a share of the smallest mean error.
    Scalars give arrays of 3; arrays over data sets give (sets x 3)."""
    return [np.stack(np.broadcast_arrays(np.asarray(log_a, dtype=np.float64),
                                         np.maximum(alpha, 0.0) * (1 + share), share * np.asarray(smallest)), axis=-1)
            for share in FLOOR_START_SHARES]


def floor_f_test(rss_null: Any, rss_floor: Any, e_inf: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """LR F-test of E_inf = 0 on per-m means: F = (RSS_power - RSS_floor) / (RSS_floor / (K - 3)), p from the
    boundary mixture 1/2 P(F_{1, K-3} > f) (Self & Liang 1987). A least-squares floor at its bound (E_inf = 0),
    an F within rounding of 0 (F_ZERO) or an exact fit (RSS_floor = 0) is the mixture's point mass: p = 1."""
    rss_null, rss_floor, e_inf = (np.asarray(x, dtype=np.float64) for x in (rss_null, rss_floor, e_inf))
    with np.errstate(divide="ignore", invalid="ignore"):
        f_statistic = np.maximum((rss_null - rss_floor) / (rss_floor / (k - 3)), 0.0)
    p_value = np.where((e_inf > 0) & (f_statistic > F_ZERO) & (rss_floor > 0), 0.5 * stats.f.sf(f_statistic, 1, k - 3), 1.0)
    return f_statistic, p_value


def _floor_cost(residual: np.ndarray, f_scale: np.ndarray, loss: str) -> np.ndarray:
    if loss == "linear":
        return 0.5 * (residual ** 2).sum(axis=1)
    z = (residual / f_scale[:, None]) ** 2
    return (f_scale ** 2 * (np.sqrt(1 + z) - 1).sum(axis=1))


def _solve_steps(systems: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Batched 3x3 solves. At alpha = 0 (its bound) A and E_inf are interchangeable and a system can be exactly
    singular: then the whole batch takes pseudo-inverse (least-norm) steps rather than stopping."""
    try:
        return np.linalg.solve(systems, right[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return (np.linalg.pinv(systems) @ right[..., None])[..., 0]


def fit_floor_batch(level_log_m: np.ndarray, mean_log: np.ndarray, counts: np.ndarray, starts: np.ndarray,
                    f_scale: np.ndarray, loss: str = "soft_l1", max_iterations: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Batched bounded Levenberg-Marquardt fit of log err = log(E_inf + A m^-alpha) to per-m means.

    One problem per row: means and counts (problems x K; a zero count drops that m), starts (problems x 3
    of log A, alpha, E_inf), f_scale (problems). Minimises the cost of ``scipy.optimize.least_squares``
    (``linear`` or ``soft_l1``, solved by iteratively reweighted Gauss-Newton steps) under alpha in [0, 10],
    E_inf >= 0; a bound that a step would cross is held fixed for that step. scipy solves one problem per
    call; this solves thousands together (the bootstrap and the calibration), and a test holds it to
    ``least_squares``. Returns (parameters (problems x 3), weighted RSS).
    """
    root = np.sqrt(counts)
    theta = starts.astype(np.float64).copy()
    lower, upper = np.array([-np.inf, 0.0, 0.0]), np.array([np.inf, 10.0, np.inf])
    theta = np.clip(theta, lower, upper)

    def evaluate(params):
        power = params[:, :1] - params[:, 1:2] * level_log_m[None, :]
        with np.errstate(divide="ignore"):
            curve = np.logaddexp(np.log(params[:, 2:3]), power)
        return root * (mean_log - curve), power, curve

    residual, power, curve = evaluate(theta)
    cost = _floor_cost(residual, f_scale, loss)
    damping = np.full(theta.shape[0], 1e-3)
    active = np.ones(theta.shape[0], dtype=bool)
    for _ in range(max_iterations):
        if not active.any():
            break
        share = np.exp(power - curve)
        jacobian = root[..., None] * np.stack([share, -level_log_m[None, :] * share, np.exp(-curve)], axis=-1)
        weight = np.ones_like(residual) if loss == "linear" else 1 / np.sqrt(1 + (residual / f_scale[:, None]) ** 2)
        normal = np.einsum("pki,pk,pkj->pij", jacobian, weight, jacobian)
        gradient = np.einsum("pki,pk,pk->pi", jacobian, weight, residual)
        diagonal = np.maximum(np.einsum("pii->pi", normal), 1e-12)
        system = normal + damping[:, None, None] * np.eye(3)[None] * diagonal[:, :, None]
        step = _solve_steps(system, gradient)
        blocked = ((theta <= lower) & (step < 0)) | ((theta >= upper) & (step > 0))
        if blocked.any():  # hold the parameters at a bound fixed and solve for the others
            keep = ~blocked
            reduced = system * keep[:, :, None] * keep[:, None, :] + np.eye(3)[None] * blocked[:, :, None]
            step = _solve_steps(reduced, gradient * keep)
        trial = np.clip(theta + step, lower, upper)
        trial_residual, trial_power, trial_curve = evaluate(trial)
        trial_cost = _floor_cost(trial_residual, f_scale, loss)
        better = active & (trial_cost <= cost)
        theta[better], residual[better], power[better], curve[better] = (
            trial[better], trial_residual[better], trial_power[better], trial_curve[better])
        improvement = np.where(better, cost - trial_cost, 0.0)
        cost = np.where(better, trial_cost, cost)
        damping = np.where(better, damping * 0.3, damping * 10)
        moved = np.abs(step).max(axis=1)
        converged = (better & (improvement <= 1e-12 * np.maximum(cost, 1e-300)) & (moved < 1e-8)) | (damping > 1e12)
        active &= ~converged
    rss = (counts * (mean_log - curve) ** 2).sum(axis=1)
    return theta, rss


def floor_test_batch(design: FitDesign, log_values: Any) -> dict[str, np.ndarray]:
    """The floor test and robust floor fit of :func:`fit_scaling_law` for many data sets at once.

    Per data set: per-m mean log errors, the weighted-OLS power law, the least-squares floor model from the
    same four starts (best kept) and the LR F-test with the boundary mixture; the estimates are that
    least-squares fit, the one the test chose with.
    Returns p_value, f_statistic, alpha_floor, a_floor, e_inf (arrays over data sets).

    Examples
    --------
    >>> import numpy as np
    >>> from astrostats.stats import floor_test_batch, scaling_design, simulate_scaling_table
    >>> grid = (4, 16, 64, 256, 1024, 4096)
    >>> tables = [simulate_scaling_table(0, m_values=grid), simulate_scaling_table(0, m_values=grid, e_inf=0.05)]
    >>> result = floor_test_batch(scaling_design(tables[0]), np.log([t["value"].to_numpy() for t in tables]))
    >>> (result["p_value"] < 0.01).tolist()
    [False, True]
    """
    y = np.atleast_2d(np.asarray(log_values, dtype=np.float64))
    k = design.level_log_m.size
    if k < 4:
        raise fail("m", "at least 4 distinct m for the floor model", k)
    codes = design.m_codes
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    mean_log = np.stack([np.bincount(codes, weights=row, minlength=k) for row in y]) / counts
    within = ((y - mean_log[:, codes]) ** 2).sum(axis=1)
    scale = 3 * np.maximum(np.sqrt(within / max(design.n - k, 1)), 1e-8)
    weights = counts / counts.sum()
    centre = weights @ design.level_log_m
    slope = (mean_log - (mean_log @ weights)[:, None]) @ (weights * (design.level_log_m - centre)) \
        / (weights @ (design.level_log_m - centre) ** 2)
    fitted_null = (mean_log @ weights)[:, None] + slope[:, None] * (design.level_log_m - centre)[None, :]
    rss_null = ((mean_log - fitted_null) ** 2 * counts).sum(axis=1)
    power = power_law_batch(design, y)
    starts = np.concatenate(floor_starts(power["log_a"], power["alpha"], np.exp(mean_log.min(axis=1))))
    repeat = len(FLOOR_START_SHARES)
    fits, rss = fit_floor_batch(design.level_log_m, np.tile(mean_log, (repeat, 1)), np.tile(counts, (repeat * y.shape[0], 1)),
                                starts, np.tile(scale, repeat), loss="linear")
    best = rss.reshape(repeat, -1).argmin(axis=0)
    pick = best * y.shape[0] + np.arange(y.shape[0])
    least_squares_params, rss_floor = fits[pick], rss[pick]
    f_statistic, p_value = floor_f_test(rss_null, rss_floor, least_squares_params[:, 2], k)
    return {"p_value": p_value, "f_statistic": f_statistic, "alpha_floor": least_squares_params[:, 1],
            "a_floor": np.exp(least_squares_params[:, 0]), "e_inf": least_squares_params[:, 2]}
