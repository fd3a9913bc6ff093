"""Error-scaling laws err(m) with honest uncertainty: how fast the circuit approaches attention, and when.

Two models of the error as a function of the hidden units m, both fitted to log(error):

- power law      err = A m^-alpha          (statsmodels OLS in log-log space; cluster-robust SEs by sequence
                                             and feature draw, two-way when both vary);
- power + floor  err = E_inf + A m^-alpha   (scipy ``least_squares``, least squares as the floor F-test, E_inf >= 0), fitted to the
                                             per-m mean log errors weighted by their counts: for squared loss
                                             this equals the row-level fit, and sequence effects (a common
                                             offset in log error) drop out of the comparison.

The floor is tested by a likelihood-ratio F-test on the per-m means with the boundary mixture
p = 1/2 P(F_{1, K-3} > f) (Self & Liang 1987; K distinct m, needs K >= 4); AIC/BIC (row-level Gaussian
likelihood, rows treated as independent) are reported beside it as diagnostics. alpha is tested against the
random-feature rate 1/2 with the cluster-robust t-test.

CIs come from a hierarchical bootstrap built so that each source of variance is counted once. The runner
shares each feature draw (m, seed) across sequences, so the crossed ("pigeonhole") bootstrap of sequences x
draws counts the row noise twice: once in the draw means, once in the sequences' own slopes (sequence fixed
effects make sequence offsets irrelevant to alpha, so with equal slopes the sequence level carries nothing
but that noise); its 95 % CI covered a known alpha 97.4 % of the time. Here alpha* = the slope refitted with
the feature draws resampled within each m (Rao-Wu: n - 1 of n, rescaled, unbiased with 8 seeds per m) plus
the resampled deviations of the sequences' own slopes, shrunk by lambda so that only their excess over the
row noise (real slope differences between sequences) is added (:func:`_sequence_shrinkage`), widened by
t_{S-1}/z because their variance rests on S - 1 degrees of freedom. Coverage of a known alpha over 5,000
simulated tables: 94.9 % (equal slopes) and within 93-97 % when sequences differ in slope (calibration study).

This module holds the single fit (:func:`fit_scaling_law`) and the fits of every group of a runner table
(:func:`scaling_fits_table`); :mod:`astrostats.stats.scaling_batch` runs the same estimators on many data
sets sharing one layout (the calibration, the bootstrap), with the floor test shared by both paths; the
fitted result is a :class:`astrostats.stats.scaling_result.ScalingFit`.

The observed/predicted ratio of the error constant compares sqrt(mean(err^2 m)) with the RMS of the
predicted constants C (theory: E err^2 = C^2 / m), using the upper half of the m grid (the asymptotic regime).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize

from astrostats.stats._common import as_vector, check_columns, check_confidence, t_over_z
from astrostats.stats.resampling import bootstrap_interval
from astrostats.stats.scaling_batch import (RATE, alpha_draws, bootstrap_units, design_of, fit_floor_batch,
                                            floor_f_test, floor_starts, prepare)
from astrostats.stats.scaling_result import ScalingFit
from astrostats.validation import InputError, check_choice, check_float, check_int, fail
from astrostats.seeding import numpy_rng

BOOTSTRAP_METHOD = ("alpha: feature draws resampled within m (Rao-Wu) + sequence slope deviations resampled, "
                    "shrunk to remove the row noise counted at the draw level; A, theory ratio, floor: "
                    "sequences x feature draws (Rao-Wu)")


def _constants_per_row(prepared: pd.DataFrame, predicted_constant: Any, sequence_col: str | None) -> np.ndarray | None:
    if predicted_constant is None:
        return None
    if isinstance(predicted_constant, (Mapping, pd.Series)):
        if sequence_col is None:
            raise fail("predicted_constant", "a number when no sequence column is among cluster_cols", "a mapping")
        mapping = pd.Series(predicted_constant)
        constants = prepared[sequence_col].map(mapping).to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(constants).any():
            absent = sorted(set(prepared[sequence_col]) - set(mapping.index))[:5]
            raise fail("predicted_constant", "a constant for every sequence_id", f"missing for {absent}")
    else:
        constants = np.full(len(prepared), check_float("predicted_constant", predicted_constant, minimum=0, strict=True))
    if not np.isfinite(constants).all() or (constants <= 0).any():
        raise fail("predicted_constant", "positive finite constants", constants[~(constants > 0)][:3])
    return constants


def _power_law_draws(weights: np.ndarray, x: np.ndarray, y: np.ndarray,
                     sequences: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted slope with sequence fixed effects, and the pooled intercept, for every weight row.

    Within-sequence sums: S_xy = sum w x y - sum_s (sum_s w x)(sum_s w y) / sum_s w (vectorised over rows
    of ``weights``); a sequence with zero weight drops out.
    """
    total = weights.sum(axis=1)
    mean_x, mean_y = weights @ x / total, weights @ y / total
    if sequences is None:
        sxx = weights @ (x * x) - total * mean_x ** 2
        sxy = weights @ (x * y) - total * mean_x * mean_y
    else:
        indicator = np.zeros((x.size, sequences.max() + 1))
        indicator[np.arange(x.size), sequences] = 1.0
        count = weights @ indicator
        safe = np.where(count > 0, count, 1.0)
        sum_x, sum_y = weights @ (indicator * x[:, None]), weights @ (indicator * y[:, None])
        sxx = weights @ (x * x) - (sum_x ** 2 / safe).sum(axis=1)
        sxy = weights @ (x * y) - (sum_x * sum_y / safe).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > 1e-12 * np.maximum(weights @ (x * x), 1e-300), sxy / sxx, np.nan)
    return -slope, mean_y - slope * mean_x


def _floor_curve(params: np.ndarray, log_m: np.ndarray) -> np.ndarray:
    log_a, alpha, e_inf = params
    return np.logaddexp(np.log(e_inf) if e_inf > 0 else -np.inf, log_a - alpha * log_m)


def _fit_floor(log_m: np.ndarray, mean_log: np.ndarray, counts: np.ndarray, starts: list[np.ndarray],
               f_scale: float, loss: str = "soft_l1") -> tuple[np.ndarray, float]:
    """NLS of per-m mean log errors (best of several starts); returns (log_a, alpha, e_inf) and the weighted RSS."""
    root = np.sqrt(counts)
    residual = lambda params: root * (mean_log - _floor_curve(params, log_m))
    best = None
    for start in starts:
        fitted = optimize.least_squares(residual, start, bounds=([-np.inf, 0.0, 0.0], [np.inf, 10.0, np.inf]),
                                        loss=loss, f_scale=f_scale, x_scale="jac")
        if best is None or fitted.cost < best.cost:
            best = fitted
    return best.x, float((residual(best.x) ** 2).sum())


def _per_m_means(weights: np.ndarray, codes: np.ndarray, values: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted per-m counts and mean log errors, for 1-D weights."""
    counts = np.bincount(codes, weights=weights, minlength=levels)
    sums = np.bincount(codes, weights=weights * values, minlength=levels)
    return counts, sums / np.where(counts > 0, counts, 1)


def fit_scaling_law(table: pd.DataFrame, *, m_col: str = "m", value_col: str = "value",
                    cluster_cols: Sequence[str] = ("sequence_id", "seed"), n_resamples: int = 1000, seed: Any = 0,
                    epsilons: Sequence[float] = (0.1, 0.01), predicted_constant: Any = None,
                    confidence: float = 0.95, ci_method: str = "percentile", seed_within_m: bool = True, floor_alpha: float = 0.05, floor: bool = True) -> ScalingFit:
    """Fit err = A m^-alpha and err = E_inf + A m^-alpha to one group of a tidy error table.

    table: rows of (m, error) with cluster labels, e.g. one feature map and logit scale of the runner's
      ``relative_error`` rows. cluster_cols: (sequence column, feature-seed column); with
      ``seed_within_m`` (the runner's convention: the feature draw of seed s at width m is its own draw)
      the SE clusters are sequences and (m, seed) draws; the bootstrap resamples (m, seed) draws within m
      and the sequences' slope deviations (module docstring).
    predicted_constant: a number, or a mapping / Series sequence_id -> C (theory: err = C / sqrt(m)).
    ci_method: "percentile" or "bca" (BCa with a leave-one-sequence-out jackknife, falling back to
      percentile with a warning). floor_alpha: level at which the floor test prefers the floor model.
    floor=False skips the floor model. n_resamples=0
    skips the bootstrap (point estimates and tests only; intervals say "none").
    Raises InputError on NaN/inf, non-positive m or error, fewer than 3 distinct m, or no residual variance.

    Examples
    --------
    >>> from astrostats.stats import fit_scaling_law, simulate_scaling_table
    >>> table = simulate_scaling_table(0, alpha=0.5)  # err = m^-1/2 with noise, 8 sequences x 4 seeds
    >>> fit = fit_scaling_law(table, n_resamples=200, seed=1)
    >>> low, high = fit.intervals["alpha"][:2]
    >>> bool(low < 0.5 < high), fit.preferred_model
    (True, 'power_law')
    >>> bool(fit.m_required(0.1)["estimate"] < 200)
    True
    """
    cluster_cols = list(cluster_cols)
    if len(cluster_cols) > 2:
        raise fail("cluster_cols", "at most two columns (sequence, feature seed)", cluster_cols)
    n_resamples = check_int("n_resamples", n_resamples, minimum=0)
    if 0 < n_resamples < 20:
        raise fail("n_resamples", "0 (no bootstrap) or >= 20 resamples", n_resamples)
    confidence = check_confidence(confidence)
    ci_method = check_choice("ci_method", ci_method, ("percentile", "bca"))
    floor_alpha = check_float("floor_alpha", floor_alpha, minimum=0.0, strict=True, maximum=1.0)
    epsilons = tuple(check_float("epsilons", e, minimum=0.0, strict=True) for e in epsilons)
    data = prepare(table, m_col, value_col, cluster_cols)
    layout = design_of(data, cluster_cols, seed_within_m)
    x, y = data["log_m"].to_numpy(), data["log_value"].to_numpy()
    m_codes, level_log_m = layout.m_codes, layout.level_log_m
    m_levels = pd.Index(np.sort(data["m"].unique()))  # the widths themselves (level_log_m holds their logs)
    k = level_log_m.size
    sequence_col = cluster_cols[0] if cluster_cols else None
    constants = _constants_per_row(data, predicted_constant, sequence_col)

    # power law: OLS in log-log space, cluster-robust covariance
    cluster_names = [column for column, _ in layout.clusters]
    cluster_keys = [codes for _, codes in layout.clusters]
    if layout.sequence_codes is not None:
        # sequence fixed effects: a hard sequence shifts log error at every m; left in the residuals it
        # would make the two-way cluster covariance (V_seq + V_draw - V_rows) badly biased downwards
        dummies = np.eye(layout.sequence_codes.max() + 1)[layout.sequence_codes]
        design_matrix = np.column_stack([dummies, x])
    else:
        design_matrix = sm.add_constant(x)
    ols = sm.OLS(y, design_matrix)
    if cluster_keys:
        groups = np.column_stack(cluster_keys) if len(cluster_keys) == 2 else cluster_keys[0]
        result = ols.fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
        cov_type = f"cluster ({' x '.join(cluster_names)}{', seed within m' if seed_within_m and len(cluster_keys) == 2 else ''})"
        with np.errstate(invalid="ignore"):  # a negative two-way variance is handled just below
            two_way_ok = bool(result.bse[-1] > 0)
        if len(cluster_keys) == 2 and not two_way_ok:
            # two-way variance V_a + V_b - V_ab can be negative; use the larger one-way variance instead
            # (Cameron, Gelbach & Miller 2011)
            one_way = [ols.fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True) for codes in cluster_keys]
            choice = int(np.argmax([fit.bse[-1] for fit in one_way]))
            result = one_way[choice]
            cov_type = f"cluster ({cluster_cols[choice]} only: two-way variance was not positive)"
    else:
        result = ols.fit(cov_type="HC1", use_t=True)
        cov_type = "HC1 (no clusters with >= 2 levels)"
    if not result.ssr > 1e-20 * max(1.0, float((y ** 2).sum())) or result.df_resid < 1:
        raise fail(value_col, "errors with some residual variance around the power law", "an exact power law (zero variance)")
    alpha = -float(result.params[-1])
    log_a = float(y.mean() + alpha * x.mean())  # pooled intercept: the geometric-mean constant
    alpha_se = float(result.bse[-1])
    contrast = np.zeros((1, design_matrix.shape[1]))
    contrast[0, -1] = 1.0
    half = result.t_test((contrast, np.array([-RATE])))
    t_half, p_half = float(np.squeeze(half.tvalue)), float(np.squeeze(half.pvalue))

    # power law with floor, on per-m mean log errors
    counts, mean_log = _per_m_means(np.ones(len(data)), m_codes, y, k)
    within = y - mean_log[m_codes]
    scale = 3 * max(float(np.sqrt((within ** 2).sum() / max(len(data) - k, 1))), 1e-8)
    null_fit = np.polyfit(level_log_m, mean_log, 1, w=np.sqrt(counts))  # = row-level pooled OLS
    rss_null = float((counts * (mean_log - np.polyval(null_fit, level_log_m)) ** 2).sum())
    estimates = {"alpha": alpha, "a": math.exp(log_a)}
    floor_status = "ok"
    floor_p, floor_f = 1.0, math.nan
    if not floor:
        floor_status = "not fitted: floor=False"
    elif k >= 4:
        starts = floor_starts(log_a, alpha, float(np.exp(mean_log.min())))
        # the test compares Gaussian (least-squares) fits, and the reported estimates are that same fit: the
        # model the choice was made with (a soft-L1 refit could report a floor the test never saw)
        least_squares_params, rss_floor = _fit_floor(level_log_m, mean_log, counts, starts, scale, loss="linear")
        floor_params = least_squares_params
        estimates.update(alpha_floor=float(floor_params[1]), a_floor=float(math.exp(floor_params[0])),
                         e_inf=float(floor_params[2]))
        if rss_floor > 0:
            floor_f, floor_p = (float(x) for x in floor_f_test(rss_null, rss_floor, least_squares_params[2], k))
        else:
            floor_status = "exact fit of the per-m means: floor test has no residual degrees of freedom"
    else:
        floor_status = "not fitted: the floor model needs >= 4 distinct m"
    preferred = "power_law_floor" if ("e_inf" in estimates and floor_p < floor_alpha) else "power_law"

    # aic/bic on rows (Gaussian, rows independent): diagnostics only
    n = len(data)
    within_ss = float((within ** 2).sum())
    llf = lambda rss: -0.5 * n * (math.log(2 * math.pi * max(rss, 1e-300) / n) + 1)
    aic_power, bic_power = 2 * 3 - 2 * llf(within_ss + rss_null), 3 * math.log(n) - 2 * llf(within_ss + rss_null)
    diagnostics = {"n": n, "n_m": k, "m_min": float(m_levels.min()), "m_max": float(m_levels.max()),
                   "n_sequences": int(data[cluster_cols[0]].nunique()) if cluster_cols else None,
                   "n_seeds": int(data[cluster_cols[1]].nunique()) if len(cluster_cols) > 1 else None,
                   "alpha_se_cluster": alpha_se, "alpha_t_vs_half": t_half, "df_inference": float(result.df_resid_inference)
                   if hasattr(result, "df_resid_inference") else float(result.df_resid),
                   "cov_type": cov_type, "r_squared": float(result.rsquared), "aic_power_law": aic_power,
                   "bic_power_law": bic_power, "floor_status": floor_status, "floor_f": floor_f,
                   "n_resamples": n_resamples, "bootstrap": BOOTSTRAP_METHOD}
    if "e_inf" in estimates:
        rss_floor_rows = within_ss + rss_floor
        diagnostics.update(aic_power_law_floor=2 * 4 - 2 * llf(rss_floor_rows),
                           bic_power_law_floor=4 * math.log(n) - 2 * llf(rss_floor_rows))
        diagnostics["delta_aic"] = diagnostics["aic_power_law_floor"] - aic_power
        diagnostics["delta_bic"] = diagnostics["bic_power_law_floor"] - bic_power
    else:
        diagnostics["delta_aic"] = diagnostics["delta_bic"] = math.nan

    # theory ratio on the upper half of the m grid
    upper = data["m"].to_numpy() >= np.median(m_levels.to_numpy(dtype=np.float64))
    numerator = data["value"].to_numpy() ** 2 * data["m"].to_numpy() * upper
    if constants is not None:
        estimates["theory_ratio"] = math.sqrt(numerator.sum() / (constants ** 2 * upper).sum())
        diagnostics["theory_ratio_status"] = "ok"
    else:
        diagnostics["theory_ratio_status"] = "no predicted constant given"

    # hierarchical bootstrap (plus leave-one-sequence-out jackknife rows for BCa)
    if n_resamples:
        draw_units, sequence_units = bootstrap_units(layout, n_resamples, numpy_rng(seed))
        boot_alpha, shrinkage = alpha_draws(layout, y[None, :], draw_units[None],
                                             None if sequence_units is None else sequence_units[None], confidence)
        boot_alpha, shrinkage = boot_alpha[0], float(shrinkage[0])
        # crossed row weights (draw x sequence) for A, the theory ratio and the floor model: statistics
        # dominated by sequence offsets, beside which the twice-counted row noise is small
        weights = draw_units[:, layout.draw_codes] if layout.draw_codes is not None else np.ones((n_resamples, n))
        if sequence_units is not None:
            weights = weights * sequence_units[:, layout.sequence_codes]
    else:
        boot_alpha, weights, shrinkage = np.zeros(0), np.zeros((0, n)), math.nan
    diagnostics["sequence_shrinkage"] = shrinkage
    jack_labels = data[cluster_cols[0]].to_numpy() if cluster_cols else np.arange(n)
    jack_units = pd.unique(jack_labels)
    jack_weights = np.stack([(jack_labels != unit).astype(np.float64) for unit in jack_units]) \
        if ci_method == "bca" and jack_units.size >= 3 and n_resamples else np.zeros((0, n))
    jack_alpha = _power_law_draws(jack_weights, x, y, layout.sequence_codes)[0] if len(jack_weights) else np.zeros(0)
    all_weights = np.vstack([weights, jack_weights])
    draw_alpha = np.concatenate([boot_alpha, jack_alpha])
    total = all_weights.sum(axis=1)
    log_a_draws = (all_weights @ y + draw_alpha * (all_weights @ x)) / total
    if layout.sequence_codes is not None and n_resamples:
        # the constant's spread rests on S - 1 degrees of freedom between sequences, as alpha's does: widen the
        # bootstrap deviations by t_{S-1} / z (known answers: unwidened, its m_required CI covered 86 %)
        widen = t_over_z(confidence, int(layout.sequence_codes.max()))  # codes 0..S-1: S - 1 degrees of freedom
        log_a_draws[:n_resamples] = log_a + widen * (log_a_draws[:n_resamples] - log_a)
    draws = {"alpha": draw_alpha, "a": np.exp(log_a_draws)}
    if "e_inf" in estimates:
        start = np.array([math.log(estimates["a_floor"]), estimates["alpha_floor"], estimates["e_inf"]])
        indicator = np.eye(k)[m_codes]
        row_counts = all_weights @ indicator
        row_means = (all_weights @ (indicator * y[:, None])) / np.where(row_counts > 0, row_counts, 1.0)
        fitted, _ = fit_floor_batch(level_log_m, row_means, row_counts, np.tile(start, (len(all_weights), 1)),
                                    np.full(len(all_weights), scale), loss="linear")
        fitted[(row_counts > 0).sum(axis=1) < 4] = np.nan
        draws.update(alpha_floor=fitted[:, 1], a_floor=np.exp(fitted[:, 0]), e_inf=fitted[:, 2])
    if constants is not None:
        draws["theory_ratio"] = np.sqrt((all_weights @ numerator) / (all_weights @ (constants ** 2 * upper)))
    frame = pd.DataFrame(draws)
    boot, jack = frame.iloc[:n_resamples].reset_index(drop=True), frame.iloc[n_resamples:]
    intervals = {}
    for name, estimate in estimates.items():
        if n_resamples == 0:
            intervals[name] = (math.nan, math.nan, "none (n_resamples=0)")
            continue
        values = boot[name].to_numpy()
        values = values[np.isfinite(values)]
        low, high, used = bootstrap_interval(values, estimate, confidence=confidence, method=ci_method,
                                             jackknife=jack[name].to_numpy() if len(jack) else None)
        intervals[name] = (low, high, used)
    diagnostics["failed_draws"] = int((~np.isfinite(boot.to_numpy())).any(axis=1).sum())
    tests = {"alpha_vs_half": {"statistic": t_half, "p_value": p_half, "method": "cluster-robust t-test of alpha = 1/2"},
             "floor": {"statistic": floor_f, "p_value": floor_p,
                       "method": "LR F-test of E_inf = 0 on per-m means, boundary mixture 1/2 F(1, K-3)"}}
    return ScalingFit(estimates=estimates, intervals=intervals, tests=tests, diagnostics=diagnostics, draws=boot,
                      preferred_model=preferred, confidence=confidence, ci_method=ci_method, epsilons=epsilons,
                      m_max=float(m_levels.max()))


def scaling_fits_table(measurements: pd.DataFrame, by: Sequence[str] = ("feature_map", "logit_scale"), *,
                       predicted_constants: pd.DataFrame | None = None, m_col: str = "m", value_col: str = "value",
                       cluster_cols: Sequence[str] = ("sequence_id", "seed"), **fit_options: Any) -> pd.DataFrame:
    """Fit every group of a runner table (already filtered to one metric); one tidy row per group.

    predicted_constants: a DataFrame with the ``by`` columns, ``sequence_id`` and ``predicted_constant``
    (one row per sequence); the theory ratio pairs each row with its own sequence's constant and compares
    root-mean-squares (``theory_ratio = sqrt(mean err^2 m) / sqrt(mean C^2)``). A group that cannot be
    fitted (fewer than 3 distinct m, non-positive errors, zero variance, ...) gives a row with
    status="insufficient_data" and the reason. NaN or inf anywhere in m (where present) or value is an
    InputError for the whole table. Other keyword arguments go to :func:`fit_scaling_law`.

    Examples
    --------
    >>> import pandas as pd
    >>> from astrostats.stats import scaling_fits_table, simulate_scaling_table
    >>> table = pd.concat([simulate_scaling_table(0, alpha=0.5).assign(feature_map="positive"),
    ...                    simulate_scaling_table(1, alpha=0.25).assign(feature_map="slow")])
    >>> fits = scaling_fits_table(table, by=["feature_map"], n_resamples=100, seed=0)
    >>> fits.set_index("feature_map")["alpha"].round(1).to_dict()
    {'positive': 0.5, 'slow': 0.3}
    """
    by = list(by)
    check_columns(measurements, [*by, m_col, value_col, *cluster_cols], "measurements")
    if "metric" in measurements and measurements["metric"].nunique() > 1:
        raise fail("measurements", "a table filtered to one metric", sorted(measurements["metric"].unique()))
    values = pd.to_numeric(measurements[value_col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(values).all():
        raise fail(value_col, "finite values (no NaN or inf)", f"{int((~np.isfinite(values)).sum())} non-finite rows")
    if predicted_constants is not None:
        check_columns(predicted_constants, [*by, "sequence_id", "predicted_constant"], "predicted_constants")
    rows = []
    for key, group in measurements.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        labels = dict(zip(by, key))
        constant = None
        if predicted_constants is not None:
            mask = np.ones(len(predicted_constants), dtype=bool)
            for column, value in labels.items():
                mask &= (predicted_constants[column] == value).to_numpy()
            chosen = predicted_constants[mask]
            if len(chosen):
                constant = chosen.groupby("sequence_id")["predicted_constant"].mean()
        try:
            fit = fit_scaling_law(group, m_col=m_col, value_col=value_col, cluster_cols=cluster_cols,
                                  predicted_constant=constant, **fit_options)
        except InputError as error:
            if not _is_group_defect(error):
                raise
            rows.append({**labels, "n": len(group), "status": "insufficient_data", "reason": str(error)})
            continue
        row = {**labels, **fit.summary_row()}
        if predicted_constants is not None and constant is None:
            row["theory_ratio_status"] = "no predicted constants for this group"
        rows.append(row)
    return pd.DataFrame(rows)


def log_spread_trend(m: Any, values: Any, confidence: float = 0.95) -> dict:
    """How the spread of log errors changes with m: OLS of log SD(log error at m) on log m (statsmodels), its
    slope and CI. A slope above 0 means the typical (geometric-mean) error, whose rate a log-log fit measures,
    falls faster than the root-mean-square error; below 0, slower (a floor compresses the spread). NaN, with a
    reason, where fewer than 3 widths have a spread."""
    confidence = check_confidence(confidence)
    m, values = as_vector("m", m, positive=True), as_vector("values", values, positive=True)
    if m.shape != values.shape:
        raise fail("m, values", "two 1-D arrays of one length", f"shapes {m.shape} and {values.shape}")
    frame = pd.DataFrame({"m": m, "log_value": np.log(values)})
    spread = frame.groupby("m")["log_value"].std().dropna()
    spread = spread[spread > 0]
    if len(spread) < 3:
        return {"spread_slope": math.nan, "spread_slope_ci_low": math.nan, "spread_slope_ci_high": math.nan,
                "spread_reason": f"{len(spread)} widths with a spread of log errors; need >= 3"}
    fit = sm.OLS(np.log(spread.to_numpy()), sm.add_constant(np.log(spread.index.to_numpy()))).fit()
    low, high = fit.conf_int(alpha=1 - confidence)[1]
    return {"spread_slope": float(fit.params[1]), "spread_slope_ci_low": float(low),
            "spread_slope_ci_high": float(high), "spread_reason": ""}


def rms_rate(m: Any, draw: Any, sequence: Any, values: Any, confidence: float = 0.95) -> dict:
    """The rate of the root-mean-square error, the one theory speaks of (E err^2 = C^2 / m): OLS of
    log sqrt(mean err^2 over the sequences of one feature draw) on log m (statsmodels, HC3 standard errors, t with
    n - 2 df), one point per (m, draw). Beside the log-log fit's rate, which is the geometric-mean error's: the
    two part where the log errors' spread changes with m. Every (m, draw) must hold the same sequences once
    each, so that their constants cancel in the slope. NaN, with a reason, where they do not, below 3 widths or
    2 draws at some width, or where the fit is not finite."""
    confidence = check_confidence(confidence)
    m, values = as_vector("m", m, positive=True), as_vector("values", values, positive=True)
    if not m.shape == np.shape(draw) == np.shape(sequence) == values.shape:
        raise fail("m, draw, sequence, values", "four 1-D arrays of one length",
                   f"shapes {m.shape}, {np.shape(draw)}, {np.shape(sequence)} and {values.shape}")
    frame = pd.DataFrame({"m": m, "draw": np.asarray(draw), "sequence": np.asarray(sequence), "value": values})
    if frame[["draw", "sequence"]].isna().any().any():
        raise fail("draw, sequence", "a label on every row", "a missing one")
    nan = {"alpha_rms": math.nan, "alpha_rms_ci_low": math.nan, "alpha_rms_ci_high": math.nan,
           "alpha_rms_se": math.nan}
    cells = frame.groupby(["m", "draw"])
    counts, distinct, every = cells["sequence"].size(), cells["sequence"].nunique(), frame["sequence"].nunique()
    uneven = (counts != every) | (distinct != every)
    if uneven.any():
        m_bad, draw_bad = uneven.index[uneven.to_numpy()][0]
        return {**nan, "alpha_rms_reason": f"not each of the {every} sequences once in every (m, draw): "
                                           f"{int(counts[(m_bad, draw_bad)])} rows, {int(distinct[(m_bad, draw_bad)])} "
                                           f"distinct at m = {m_bad:g}, draw {draw_bad}"}
    # each cell's squares over its largest error: no overflow or underflow whatever the errors' scale
    scaled = frame["value"] / cells["value"].transform("max")
    log_rms = 0.5 * np.log(scaled.pow(2).groupby([frame["m"], frame["draw"]]).mean()) + np.log(cells["value"].max())
    draws_per_m = log_rms.groupby(level="m").size()
    if len(draws_per_m) < 3 or draws_per_m.min() < 2:
        return {**nan, "alpha_rms_reason": f"{len(draws_per_m)} widths with >= {int(draws_per_m.min())} draws each; "
                                           f"need >= 3 widths with >= 2 draws"}
    log_m = np.log(log_rms.index.get_level_values("m").to_numpy())
    fit = sm.OLS(log_rms.to_numpy(), sm.add_constant(log_m)).fit(cov_type="HC3", use_t=True)
    low, high = fit.conf_int(alpha=1 - confidence)[1]
    if not all(math.isfinite(value) for value in (fit.params[1], low, high)):
        return {**nan, "alpha_rms_reason": "the fit's rate or its standard error is not finite"}
    return {"alpha_rms": -float(fit.params[1]), "alpha_rms_ci_low": -float(high), "alpha_rms_ci_high": -float(low),
            "alpha_rms_se": float(fit.bse[1]), "alpha_rms_reason": ""}


def _is_group_defect(error: InputError) -> bool:
    """Defects of one group's data (flagged per row) as opposed to a malformed call (raised)."""
    text = str(error)
    return any(phrase in text for phrase in ("distinct m", "positive m", "positive errors", "zero variance",
                                             "finite m for every row", "a constant for every sequence_id"))
