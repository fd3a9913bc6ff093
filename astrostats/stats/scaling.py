"""Error-scaling laws err(m) with honest uncertainty: how fast the circuit approaches attention, and when.

Two models of the error as a function of the hidden units m, both fitted to log(error):

- power law      err = A m^-alpha          (statsmodels OLS in log-log space; cluster-robust SEs by sequence
                                             and feature draw, two-way when both vary);
- power + floor  err = E_inf + A m^-alpha   (scipy ``least_squares``, soft-L1 loss, E_inf >= 0), fitted to the
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

:class:`FitDesign`, :func:`power_law_batch`, :func:`power_law_bootstrap` and :func:`floor_test_batch` run
the same estimators on many data sets sharing one layout (the calibration); tests hold them to statsmodels
and scipy.

The observed/predicted ratio of the error constant compares sqrt(mean(err^2 m)) with the RMS of the
predicted constants C (theory: E err^2 = C^2 / m), using the upper half of the m grid (the asymptotic regime).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize, sparse, stats

from astrostats.stats._common import check_columns, check_confidence, make_rng, result_frame
from astrostats.stats.resampling import bootstrap_interval, rescaled_cluster_weights
from astrostats.validation import InputError, check_choice, check_float, check_int, fail

RATE = 0.5  # the random-feature Monte-Carlo rate
CHUNK_ELEMENTS = 1 << 22  # bootstrap weights held at once by the batched path (32 MB of float64)
F_ZERO = 1e-8  # a floor F statistic below this is rounding: the floor sits on its boundary E_inf = 0
BOOTSTRAP_METHOD = ("alpha: feature draws resampled within m (Rao-Wu) + sequence slope deviations resampled, "
                    "shrunk to remove the row noise counted at the draw level; A, theory ratio, floor: "
                    "sequences x feature draws (Rao-Wu)")


def epsilon_label(epsilon: float) -> str:
    """0.1 -> '10pct', 0.01 -> '1pct', 0.005 -> '0p5pct' (column-name friendly)."""
    return f"{epsilon * 100:g}pct".replace(".", "p")


@dataclass(frozen=True)
class ScalingFit:
    """A fitted scaling law: estimates, CIs, tests, diagnostics and the bootstrap draws.

    ``estimates``/``intervals`` are keyed by parameter: alpha, a (power law); alpha_floor, a_floor, e_inf
    (power law with floor, when fitted); theory_ratio (when a predicted constant was given).
    ``draws`` has one column per parameter, one row per bootstrap resample.
    """

    estimates: dict
    intervals: dict
    tests: dict
    diagnostics: dict
    draws: pd.DataFrame = field(repr=False)
    preferred_model: str = "power_law"
    confidence: float = 0.95
    ci_method: str = "percentile"
    epsilons: tuple = (0.1, 0.01)
    m_max: float = math.nan

    def predict(self, m: Any, model: str | None = None) -> np.ndarray:
        """Fitted error at m under ``model`` (default: the preferred model)."""
        model = check_choice("model", model or self.preferred_model, self._fitted_models())
        m = np.asarray(m, dtype=np.float64)
        if model == "power_law":
            return self.estimates["a"] * m ** -self.estimates["alpha"]
        return self.estimates["e_inf"] + self.estimates["a_floor"] * m ** -self.estimates["alpha_floor"]

    def _fitted_models(self) -> list[str]:
        return ["power_law"] + (["power_law_floor"] if "e_inf" in self.estimates else [])

    def m_required(self, epsilon: float, model: str | None = None) -> dict:
        """m needed for an error of ``epsilon`` with its bootstrap CI; infinite (flagged) when unreachable.

        Unreachable: the floor E_inf >= epsilon, or the error does not decrease (alpha <= 0).
        ``extrapolated`` says the estimate lies beyond the largest m measured.
        """
        epsilon = check_float("epsilon", epsilon, minimum=0.0, strict=True)
        model = check_choice("model", model or self.preferred_model, self._fitted_models())
        estimate = float(_m_required(self.estimates, epsilon, model))
        draws = _m_required(self.draws, epsilon, model).to_numpy(dtype=np.float64)
        draws = draws[~np.isnan(draws)]
        if draws.size < 2:
            low = high = math.nan  # no bootstrap was run (n_bootstrap=0): the interval is absent, not zero-width
        else:
            low, high, _ = bootstrap_interval(draws, estimate, confidence=self.confidence, method="percentile")
        return {"epsilon": epsilon, "model": model, "estimate": estimate, "ci_low": low, "ci_high": high,
                "infinite": bool(np.isinf(estimate)), "extrapolated": bool(estimate > self.m_max),
                "share_of_draws_infinite": float(np.isinf(draws).mean())}

    def summary_row(self) -> dict:
        """One flat row (the columns of ``scaling_fits_table``)."""
        row: dict[str, Any] = {}
        for name in ("alpha", "a", "e_inf", "alpha_floor", "a_floor", "theory_ratio"):
            value = self.estimates.get(name, math.nan)
            low, high = self.intervals.get(name, (math.nan, math.nan))[:2]
            row.update({name: value, f"{name}_ci_low": low, f"{name}_ci_high": high})
        row["alpha_se_cluster"] = self.diagnostics["alpha_se_cluster"]
        row["preferred_model"] = self.preferred_model
        row["floor_p_value"] = self.tests["floor"]["p_value"]
        row["alpha_vs_half_p_value"] = self.tests["alpha_vs_half"]["p_value"]
        for epsilon in self.epsilons:
            label = f"m_required_{epsilon_label(epsilon)}"
            result = self.m_required(epsilon)
            row.update({label: result["estimate"], f"{label}_ci_low": result["ci_low"],
                        f"{label}_ci_high": result["ci_high"], f"{label}_infinite": result["infinite"],
                        f"{label}_extrapolated": result["extrapolated"]})
        for key in ("n", "n_m", "n_sequences", "n_seeds", "m_min", "m_max", "delta_aic", "delta_bic", "cov_type",
                    "n_bootstrap", "floor_status", "theory_ratio_status"):
            row[key] = self.diagnostics.get(key)
        row["ci_method"] = self.ci_method
        row["status"], row["reason"] = "ok", ""
        return row

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows, one per parameter or test, with the standard result columns."""
        rows = []
        n = self.diagnostics["n"]
        described = {"alpha": ("power_law", "log-log OLS; CI hierarchical bootstrap; p: cluster-robust t-test of alpha = 1/2"),
                     "a": ("power_law", "log-log OLS, exp(intercept); CI hierarchical bootstrap"),
                     "alpha_floor": ("power_law_floor", "robust NLS (soft-L1) on per-m mean log errors"),
                     "a_floor": ("power_law_floor", "robust NLS (soft-L1) on per-m mean log errors"),
                     "e_inf": ("power_law_floor", "robust NLS; p: LR F-test of E_inf = 0 (boundary mixture)"),
                     "theory_ratio": ("power_law", "sqrt(mean err^2 m) / RMS predicted constant, upper half of m")}
        p_values = {"alpha": self.tests["alpha_vs_half"]["p_value"], "e_inf": self.tests["floor"]["p_value"]}
        for name, (model, method) in described.items():
            if name not in self.estimates:
                continue
            low, high = self.intervals[name][:2]
            rows.append({"parameter": name, "model": model, "statistic": self.estimates[name],
                         "p_value": p_values.get(name, math.nan), "ci_low": low, "ci_high": high,
                         "effect": self.estimates[name], "effect_name": name, "n": n, "method": method})
        for epsilon in self.epsilons:
            result = self.m_required(epsilon)
            rows.append({"parameter": f"m_required_{epsilon_label(epsilon)}", "model": result["model"],
                         "statistic": result["estimate"], "p_value": math.nan, "ci_low": result["ci_low"],
                         "ci_high": result["ci_high"], "effect": result["estimate"], "effect_name": "m",
                         "n": n, "method": "m at which the preferred model reaches epsilon; bootstrap CI",
                         "infinite": result["infinite"], "extrapolated": result["extrapolated"]})
        return result_frame(rows, {name: self.draws[name].to_numpy() for name in self.draws})


def _m_required(params: Mapping | pd.DataFrame, epsilon: float, model: str):
    """Vectorised over draws: (A / (eps - E))^(1 / alpha), inf when unreachable."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if model == "power_law":
            alpha, log_a, floor = params["alpha"], np.log(params["a"]), 0.0
        else:
            alpha, log_a, floor = params["alpha_floor"], np.log(params["a_floor"]), params["e_inf"]
        gap = np.asarray(epsilon - floor, dtype=np.float64)
        alpha = np.asarray(alpha, dtype=np.float64)
        value = np.exp((np.asarray(log_a) - np.log(np.where(gap > 0, gap, np.nan))) / np.where(alpha > 0, alpha, np.nan))
        value = np.where((gap <= 0) | (alpha <= 0), np.inf, value)
        value = np.where(np.isnan(np.asarray(alpha)), np.nan, value)
    return pd.Series(value) if isinstance(params, pd.DataFrame) else value


# ---------------------------------------------------------------- input checks

def _prepare(table: pd.DataFrame, m_col: str, value_col: str, cluster_cols: Sequence[str]) -> pd.DataFrame:
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


# ---------------------------------------------------------------- fits

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


# ---------------------------------------------------------------- the design shared by data sets, batched fits

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


def _design(data: pd.DataFrame, cluster_cols: Sequence[str], seed_within_m: bool) -> FitDesign:
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
                     noise_basis=basis, noise_df=noise_df)


def scaling_design(table: pd.DataFrame, *, m_col: str = "m", value_col: str = "value",
                   cluster_cols: Sequence[str] = ("sequence_id", "seed"), seed_within_m: bool = True) -> FitDesign:
    """The :class:`FitDesign` of a table (checked like :func:`fit_scaling_law` checks it)."""
    return _design(_prepare(table, m_col, value_col, list(cluster_cols)), list(cluster_cols), seed_within_m)


def power_law_batch(design: FitDesign, log_values: Any) -> dict[str, np.ndarray]:
    """The power-law fit of :func:`fit_scaling_law` for many data sets at once (rows of ``log_values``).

    Same estimator as the statsmodels path: OLS of log error on log m with sequence fixed effects, the
    pooled intercept, CRV1 cluster-robust variance (two-way V_seq + V_draw - V_both, Cameron, Gelbach &
    Miller 2011, falling back to the larger one-way variance when that is not positive; HC1 without
    clusters), small-sample factors G/(G-1) (N-1)/(N-K), and the t-test of alpha = 1/2 with min(G) - 1
    degrees of freedom. Returns arrays over data sets: alpha, log_a, alpha_se, t_vs_half, p_vs_half, df,
    ssr, one_way (which one-way variance replaced a non-positive two-way one: -1 none).
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


def _bootstrap_units(design: FitDesign, n_bootstrap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Rao-Wu weights of the feature draws (B x draws; within m) and of the sequences (B x sequences, or None)."""
    if design.draw_codes is not None:
        draws = rescaled_cluster_weights(int(design.draw_codes.max()) + 1, n_bootstrap, rng, strata=design.draw_strata)
    else:
        draws = np.ones((n_bootstrap, 1))
    sequences = None
    if design.sequence_codes is not None:
        sequences = rescaled_cluster_weights(int(design.sequence_codes.max()) + 1, n_bootstrap, rng)
    return draws, sequences


def _alpha_draws(design: FitDesign, y: np.ndarray, draws: np.ndarray, sequences: np.ndarray | None,
                 confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """alpha* for every data set (rows of y) and resample: (sets x B draws, sets lambda).

    alpha* = the fixed-effects slope refitted with the feature draws reweighted (draws: sets x B x units),
    minus the resampled, shrunk sequence deviations (sequences: sets x B x S), widened by
    t_{S-1} / z at the confidence level: their variance rests on S - 1 degrees of freedom (8 sequences: 7),
    and a percentile interval would treat it as known (the cluster-robust t-test uses t_{min(G)-1} for the
    same reason; Hesterberg 2015 expands small-sample percentile intervals alike). Draw weights apply to every
    sequence of a draw, so the weighted sums are taken over (draw, sequence) cells: one einsum per sum for
    all data sets together (no BLAS call per data set).
    """
    x = design.log_m
    unit = design.draw_codes if design.draw_codes is not None else np.zeros(design.n, dtype=np.int64)
    sequence = design.sequence_codes if design.sequence_codes is not None else np.zeros(design.n, dtype=np.int64)
    n_units, n_sequences = int(unit.max()) + 1, int(sequence.max()) + 1
    cells = _one_hot(unit * n_sequences + sequence, n_units * n_sequences)

    def per_cell(values: np.ndarray) -> np.ndarray:  # (sets, n) -> (sets, units, sequences)
        return np.asarray(cells.T @ values.T).T.reshape(values.shape[0], n_units, n_sequences)

    design_sums = per_cell(np.stack([np.ones_like(x), x, x * x]))
    count, sum_x, sum_xx = (np.einsum("jbu,us->jbs", draws, design_sums[i]) for i in range(3))
    sum_y = np.einsum("jbu,jus->jbs", draws, per_cell(y))
    sum_xy = np.einsum("jbu,ju->jb", draws, per_cell(y * x[None, :]).sum(axis=2))
    safe = np.where(count > 0, count, 1.0)
    sxx = sum_xx.sum(axis=2) - (sum_x ** 2 / safe).sum(axis=2)
    sxy = sum_xy - (sum_x * sum_y / safe).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > 1e-12 * np.maximum(sum_xx.sum(axis=2), 1e-300), sxy / sxx, np.nan)
    shrinkage = np.ones(y.shape[0])
    if design.sequence_codes is not None:
        share = design.sequence_sxx / design.sequence_sxx.sum()
        own = (y * design.centred_log_m[None, :]) @ _one_hot(design.sequence_codes).toarray() / design.sequence_sxx
        full_slope = y @ design.centred_log_m / float((design.centred_log_m ** 2).sum())
        deviations = own - full_slope[:, None]
        shrinkage = _sequence_shrinkage(design, y, deviations)
        level = 0.5 + confidence / 2
        widen = stats.t.ppf(level, n_sequences - 1) / stats.norm.ppf(level)
        weighted = sequences * share[None, None, :]
        slope = slope + widen * np.einsum("jbs,js->jb", weighted, shrinkage[:, None] * deviations) / weighted.sum(axis=2)
    return -slope, shrinkage


def power_law_bootstrap(design: FitDesign, log_values: Any, n_bootstrap: int, seeds: Sequence[Any], *,
                        confidence: float = 0.95) -> dict[str, np.ndarray]:
    """Bootstrap draws and percentile CIs of alpha for many data sets (one seed or Generator each).

    The resampling of :func:`fit_scaling_law` (a Generator passed there and here in the same state gives
    the same draws). Returns alpha_draws (sets x B), ci_low, ci_high, shrinkage (lambda per set).
    """
    y = np.atleast_2d(np.asarray(log_values, dtype=np.float64))
    if len(seeds) != y.shape[0]:
        raise fail("seeds", f"one seed per data set ({y.shape[0]})", len(seeds))
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=20)
    confidence = check_confidence(confidence)
    n_units = int(design.draw_codes.max()) + 1 if design.draw_codes is not None else 1
    chunk = max(1, CHUNK_ELEMENTS // (n_bootstrap * n_units))  # bounds the (sets x B x units) weights
    alpha, shrinkage = np.empty((y.shape[0], n_bootstrap)), np.empty(y.shape[0])
    for start in range(0, y.shape[0], chunk):
        units = [_bootstrap_units(design, n_bootstrap, make_rng(seed)) for seed in seeds[start:start + chunk]]
        draws = np.stack([unit[0] for unit in units])
        sequences = np.stack([unit[1] for unit in units]) if design.sequence_codes is not None else None
        alpha[start:start + chunk], shrinkage[start:start + chunk] = _alpha_draws(
            design, y[start:start + chunk], draws, sequences, confidence)
    tail = (1 - confidence) / 2
    low, high = np.quantile(alpha, [tail, 1 - tail], axis=1)
    return {"alpha_draws": alpha, "ci_low": low, "ci_high": high, "shrinkage": shrinkage}


# ---------------------------------------------------------------- the floor model, batched

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
    same four starts (best kept), the LR F-test with the boundary mixture, then the soft-L1 refit.
    Returns p_value, f_statistic, alpha_floor, a_floor, e_inf (arrays over data sets).
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
    smallest = np.exp(mean_log.min(axis=1))
    shares = (0.0, 0.3, 0.6, 0.9)
    starts = np.concatenate([np.column_stack([power["log_a"], np.maximum(power["alpha"], 0) * (1 + share),
                                              share * smallest]) for share in shares])
    repeat = len(shares)
    fits, rss = fit_floor_batch(design.level_log_m, np.tile(mean_log, (repeat, 1)), np.tile(counts, (repeat * y.shape[0], 1)),
                                starts, np.tile(scale, repeat), loss="linear")
    best = rss.reshape(repeat, -1).argmin(axis=0)
    pick = best * y.shape[0] + np.arange(y.shape[0])
    least_squares_params, rss_floor = fits[pick], rss[pick]
    robust, _ = fit_floor_batch(design.level_log_m, mean_log, np.tile(counts, (y.shape[0], 1)),
                                least_squares_params, scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_statistic = np.maximum((rss_null - rss_floor) / (rss_floor / (k - 3)), 0.0)
    p_value = np.where((least_squares_params[:, 2] > 0) & (f_statistic > F_ZERO) & (rss_floor > 0),
                       0.5 * stats.f.sf(f_statistic, 1, k - 3), 1.0)
    return {"p_value": p_value, "f_statistic": f_statistic, "alpha_floor": robust[:, 1],
            "a_floor": np.exp(robust[:, 0]), "e_inf": robust[:, 2]}


def fit_scaling_law(table: pd.DataFrame, *, m_col: str = "m", value_col: str = "value",
                    cluster_cols: Sequence[str] = ("sequence_id", "seed"), n_bootstrap: int = 1000, seed: Any = 0,
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
    floor=False skips the floor model. n_bootstrap=0
    skips the bootstrap (point estimates and tests only; intervals say "none").
    Raises InputError on NaN/inf, non-positive m or error, fewer than 3 distinct m, or no residual variance.
    """
    cluster_cols = list(cluster_cols)
    if len(cluster_cols) > 2:
        raise fail("cluster_cols", "at most two columns (sequence, feature seed)", cluster_cols)
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, minimum=0)
    if 0 < n_bootstrap < 20:
        raise fail("n_bootstrap", "0 (no bootstrap) or >= 20 resamples", n_bootstrap)
    confidence = check_confidence(confidence)
    ci_method = check_choice("ci_method", ci_method, ("percentile", "bca"))
    floor_alpha = check_float("floor_alpha", floor_alpha, minimum=0.0, strict=True, maximum=1.0)
    epsilons = tuple(check_float("epsilons", e, minimum=0.0, strict=True) for e in epsilons)
    data = _prepare(table, m_col, value_col, cluster_cols)
    layout = _design(data, cluster_cols, seed_within_m)
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
        smallest = float(np.exp(mean_log.min()))
        starts = [np.array([log_a, max(alpha, 0.0) * (1 + share), share * smallest]) for share in (0.0, 0.3, 0.6, 0.9)]
        # the test compares Gaussian (least-squares) fits; the reported estimates are the robust fit
        least_squares_params, rss_floor = _fit_floor(level_log_m, mean_log, counts, starts, scale, loss="linear")
        floor_params, _ = _fit_floor(level_log_m, mean_log, counts, [least_squares_params], scale)
        estimates.update(alpha_floor=float(floor_params[1]), a_floor=float(math.exp(floor_params[0])),
                         e_inf=float(floor_params[2]))
        if rss_floor > 0 and k > 3:
            floor_f = max((rss_null - rss_floor) / (rss_floor / (k - 3)), 0.0)
            # F within rounding of 0 is a floor on the boundary (E_inf = 0): the point mass of the mixture
            floor_p = 0.5 * float(stats.f.sf(floor_f, 1, k - 3)) if least_squares_params[2] > 0 and floor_f > F_ZERO else 1.0
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
                   "n_bootstrap": n_bootstrap, "bootstrap": BOOTSTRAP_METHOD}
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
    if n_bootstrap:
        draw_units, sequence_units = _bootstrap_units(layout, n_bootstrap, make_rng(seed))
        boot_alpha, shrinkage = _alpha_draws(layout, y[None, :], draw_units[None],
                                             None if sequence_units is None else sequence_units[None], confidence)
        boot_alpha, shrinkage = boot_alpha[0], float(shrinkage[0])
        # crossed row weights (draw x sequence) for A, the theory ratio and the floor model: statistics
        # dominated by sequence offsets, beside which the twice-counted row noise is small
        weights = draw_units[:, layout.draw_codes] if layout.draw_codes is not None else np.ones((n_bootstrap, n))
        if sequence_units is not None:
            weights = weights * sequence_units[:, layout.sequence_codes]
    else:
        boot_alpha, weights, shrinkage = np.zeros(0), np.zeros((0, n)), math.nan
    diagnostics["sequence_shrinkage"] = shrinkage
    jack_labels = data[cluster_cols[0]].to_numpy() if cluster_cols else np.arange(n)
    jack_units = pd.unique(jack_labels)
    jack_weights = np.stack([(jack_labels != unit).astype(np.float64) for unit in jack_units]) \
        if ci_method == "bca" and jack_units.size >= 3 and n_bootstrap else np.zeros((0, n))
    jack_alpha = _power_law_draws(jack_weights, x, y, layout.sequence_codes)[0] if len(jack_weights) else np.zeros(0)
    all_weights = np.vstack([weights, jack_weights])
    draw_alpha = np.concatenate([boot_alpha, jack_alpha])
    total = all_weights.sum(axis=1)
    draws = {"alpha": draw_alpha, "a": np.exp((all_weights @ y + draw_alpha * (all_weights @ x)) / total)}
    if "e_inf" in estimates:
        start = np.array([math.log(estimates["a_floor"]), estimates["alpha_floor"], estimates["e_inf"]])
        indicator = np.eye(k)[m_codes]
        row_counts = all_weights @ indicator
        row_means = (all_weights @ (indicator * y[:, None])) / np.where(row_counts > 0, row_counts, 1.0)
        fitted, _ = fit_floor_batch(level_log_m, row_means, row_counts, np.tile(start, (len(all_weights), 1)),
                                    np.full(len(all_weights), scale))
        fitted[(row_counts > 0).sum(axis=1) < 4] = np.nan
        draws.update(alpha_floor=fitted[:, 1], a_floor=np.exp(fitted[:, 0]), e_inf=fitted[:, 2])
    if constants is not None:
        draws["theory_ratio"] = np.sqrt((all_weights @ numerator) / (all_weights @ (constants ** 2 * upper)))
    frame = pd.DataFrame(draws)
    boot, jack = frame.iloc[:n_bootstrap].reset_index(drop=True), frame.iloc[n_bootstrap:]
    intervals = {}
    for name, estimate in estimates.items():
        if n_bootstrap == 0:
            intervals[name] = (math.nan, math.nan, "none (n_bootstrap=0)")
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


def _is_group_defect(error: InputError) -> bool:
    """Defects of one group's data (flagged per row) as opposed to a malformed call (raised)."""
    text = str(error)
    return any(phrase in text for phrase in ("distinct m", "positive m", "positive errors", "zero variance",
                                             "finite m for every row", "a constant for every sequence_id"))
