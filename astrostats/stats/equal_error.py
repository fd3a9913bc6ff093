"""Resources at equal error: what each curve needs to reach a target error, as a ratio to a reference curve.

A curve is a family of measurements indexed by a level (a circuit's width m), each level with a resource
(e.g. plastic synapses) and an error per unit (sequence) and seed. The resource a curve needs for error
epsilon is read off its mean-error curve: the first level whose mean error is <= epsilon, interpolated
linearly in (log error, log resource) with the level before. When even the smallest level is below epsilon
the need is only bounded, [0, R(smallest)]; when no level reaches epsilon it is [R(largest), inf). Ratios
R_comparator / R_reference carry these bounds: the lower ratio uses the comparator's lower and the
reference's upper bound, the upper ratio the other two, so censoring never makes a ratio look decided.

Uncertainty: a hierarchical bootstrap, units resampled once per draw and shared by every curve (the curves
are measured on the same sequences, so the comparison is paired), seeds resampled per level and shared by
the curves with that level and seed count (circuits run on the same feature draw W for a given m and seed
are paired too; draws are independent across widths). CI: the (1 - confidence) / 2 quantile of the lower ratios
and the upper quantile of the upper ratios. p-value of H1 "ratio > threshold" (threshold = 1 / (1 +
margin): the comparator is not cheaper than the reference by more than the margin): (1 + #{lower ratio <=
threshold}) / (B + 1), never zero. Holm (or another method) across every comparison of a family by
:func:`astrostats.stats.multitest.adjust_p_values`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from astrostats.seeding import numpy_rng, seed_sequence
from astrostats.stats._common import check_columns, check_confidence, result_frame
from astrostats.stats.multitest import adjust_p_values
from astrostats.validation import check_float, check_int, fail

TINY = 1e-300  # an error of exactly zero (an exact circuit) still has a logarithm


def required_resource(mean_error: np.ndarray, resource: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (low, high) on the resource needed for mean error <= epsilon.

    mean_error: (draws, levels) with levels in increasing order; resource: (levels,), positive.
    """
    mean_error = np.atleast_2d(np.asarray(mean_error, dtype=np.float64))
    log_error = np.log(np.maximum(mean_error, TINY))
    resource = np.asarray(resource, dtype=np.float64)
    log_resource = np.log(resource)
    below = mean_error <= epsilon
    reached = below.any(-1)
    first = np.where(reached, below.argmax(-1), 0)
    previous = np.maximum(first - 1, 0)
    rows = np.arange(len(mean_error))
    e_hi, e_lo = log_error[rows, previous], log_error[rows, first]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(e_hi > e_lo, (e_hi - np.log(epsilon)) / (e_hi - e_lo), 1.0)
    interpolated = np.exp(log_resource[previous] + fraction * (log_resource[first] - log_resource[previous]))
    at_smallest = reached & (first == 0)
    low = np.where(~reached, resource[-1], np.where(at_smallest, 0.0, interpolated))
    high = np.where(~reached, np.inf, np.where(at_smallest, resource[0], interpolated))
    return low, high


def _curve(part: pd.DataFrame, units: list, level_col: str, unit_col: str, seed_col: str, value_col: str,
           resource_col: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | str:
    """Levels, resources and (units x seeds) error matrices of one curve, or why they cannot be formed."""
    unit_index = {unit: i for i, unit in enumerate(units)}
    levels, resources, matrices = [], [], []
    for level, rows in part.groupby(level_col, sort=True):
        seeds = sorted(rows[seed_col].unique())
        rows_units = rows[unit_col].map(unit_index)
        if rows_units.isna().any() or len(rows) != len(units) * len(seeds) or rows_units.nunique() != len(units):
            return f"level {level} lacks some unit or seed (or repeats one)"
        matrix = np.full((len(units), len(seeds)), np.nan)
        matrix[rows_units.to_numpy(dtype=int), rows[seed_col].map({s: i for i, s in enumerate(seeds)}).to_numpy(dtype=int)] = \
            rows[value_col].to_numpy(dtype=np.float64)
        resource = rows[resource_col].unique()
        if np.isnan(matrix).any():
            return f"level {level} lacks some unit or seed (or repeats one)"
        if len(resource) != 1 or not resource[0] > 0:
            return f"level {level} has resource {list(resource)} (expected one positive value)"
        levels.append(level)
        resources.append(float(resource[0]))
        matrices.append(matrix)
    return np.asarray(levels), np.asarray(resources), matrices


def _bootstrap_means(levels: np.ndarray, matrices: list[np.ndarray], unit_weights: np.ndarray, seed_weights) -> np.ndarray:
    """(draws, levels) mean errors: units weighted by the shared draw, seeds by ``seed_weights(level, count)``."""
    columns = []
    for level, matrix in zip(levels, matrices):
        n_units, n_seeds = matrix.shape
        columns.append(np.einsum("bs,sk,bk->b", unit_weights, matrix, seed_weights(level, n_seeds)) / (n_units * n_seeds))
    return np.stack(columns, -1)


def equal_error_comparisons(table: pd.DataFrame, *, reference: str, resource_col: str, epsilon: float,
                            margin: float, n_resamples: int = 1999, seed=0, curve_col: str = "curve",
                            level_col: str = "m", unit_col: str = "sequence_id", seed_col: str = "seed",
                            value_col: str = "value", min_units: int = 4, min_levels: int = 3,
                            confidence: float = 0.95) -> pd.DataFrame:
    """One row per comparator curve of ``table`` (one head): the resource ratio to ``reference`` at equal
    error epsilon, its bootstrap CI and the one-sided p-value of "ratio > 1 / (1 + margin)".

    ``status`` is "ok", or "insufficient_data" with the reason when a curve has fewer than ``min_levels``
    levels or the head fewer than ``min_units`` units (the minimum the rule needs to decide).
    """
    check_columns(table, [curve_col, level_col, unit_col, seed_col, value_col, resource_col])
    epsilon = check_float("epsilon", epsilon, minimum=0.0, strict=True)
    margin = check_float("margin", margin, minimum=0.0)
    n_resamples = check_int("n_resamples", n_resamples, minimum=99)
    min_units, min_levels = check_int("min_units", min_units, minimum=2), check_int("min_levels", min_levels, minimum=2)
    confidence = check_confidence(confidence)
    if reference not in set(table[curve_col]):
        raise fail(curve_col, f"a curve named {reference!r} (the reference)", sorted(set(table[curve_col]))[:8])
    table = table.assign(**{seed_col: table[seed_col].astype("float64").fillna(0.0)})
    units = sorted(table.loc[table[curve_col] == reference, unit_col].unique())
    threshold = 1.0 / (1.0 + margin)
    rng = numpy_rng(seed)
    unit_weights = rng.multinomial(len(units), np.full(len(units), 1.0 / len(units)), size=n_resamples)
    drawn = {}

    def seed_weights(level, count):  # one draw per (level, seed count), shared by curves on the same features
        if (level, count) not in drawn:
            drawn[level, count] = rng.multinomial(count, np.full(count, 1.0 / count), size=n_resamples)
        return drawn[level, count]

    curves = {name: _curve(part, units, level_col, unit_col, seed_col, value_col, resource_col)
              for name, part in table.groupby(curve_col, sort=False)}
    base = {"reference": reference, "resource": resource_col, "epsilon": epsilon, "margin": margin,
            "threshold": threshold, "n": len(units), "effect_name": f"{resource_col} ratio (comparator / reference)",
            "method": f"resource at equal error {epsilon:g} by log-log interpolation; hierarchical bootstrap "
                      f"(units shared, seeds per level), {n_resamples} draws; p = (1 + #{{lower ratio <= "
                      f"{threshold:.4g}}}) / (B + 1)"}

    def bounds(curve):
        levels, resource, matrices = curve
        point = np.stack([matrix.mean() for matrix in matrices])[None]
        return (required_resource(point, resource, epsilon),
                required_resource(_bootstrap_means(levels, matrices, unit_weights, seed_weights), resource, epsilon))

    problem = _problem(curves[reference], len(units), min_units, min_levels)
    reference_point, reference_draws = (None, None) if problem else bounds(curves[reference])
    rows = []
    for name, curve in curves.items():
        if name == reference:
            continue
        row = {"comparator": name, **base}
        why = problem or _problem(curve, len(units), min_units, min_levels)
        if why:
            rows.append({**row, "status": "insufficient_data", "reason": why})
            continue
        (low, high), (draw_low, draw_high) = bounds(curve)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_low, ratio_high = low[0] / reference_point[1][0], high[0] / reference_point[0][0]
            draws_low, draws_high = draw_low / reference_draws[1], draw_high / reference_draws[0]
        tail = (1.0 - confidence) / 2.0
        rows.append({**row, "statistic": ratio_low if ratio_low == ratio_high else np.nan,
                     "p_value": (1 + np.count_nonzero(draws_low <= threshold)) / (n_resamples + 1),
                     "ci_low": float(np.quantile(draws_low, tail, method="lower")),
                     "ci_high": float(np.quantile(draws_high, 1.0 - tail, method="higher")),
                     "effect": ratio_low if ratio_low == ratio_high else np.nan,
                     "ratio_low": ratio_low, "ratio_high": ratio_high,
                     "reference_required_low": reference_point[0][0], "reference_required_high": reference_point[1][0],
                     "comparator_required_low": low[0], "comparator_required_high": high[0],
                     "interval_estimate": True, "status": "ok", "reason": ""})
    return result_frame(rows)


def _problem(curve, n_units: int, min_units: int, min_levels: int) -> str:
    if isinstance(curve, str):
        return curve
    if n_units < min_units:
        return f"{n_units} units (sequences), fewer than the {min_units} the rule needs"
    if len(curve[0]) < min_levels:
        return f"{len(curve[0])} levels of m, fewer than the {min_levels} the rule needs"
    return ""


def equal_error_tests(table: pd.DataFrame, *, by: Sequence[str], reference: str, resource_col: str, epsilon: float,
                      margin: float, alpha: float = 0.05, correction: str = "holm", n_resamples: int = 1999,
                      seed: int = 0, **options) -> pd.DataFrame:
    """:func:`equal_error_comparisons` per ``by`` group (a head), then one multiplicity correction across every
    comparison of every group (a family)."""
    check_columns(table, list(by))
    frames = []
    for index, (key, part) in enumerate(table.groupby(list(by), sort=True)):
        result = equal_error_comparisons(part, reference=reference, resource_col=resource_col, epsilon=epsilon,
                                         margin=margin, n_resamples=n_resamples,
                                         seed=seed_sequence(seed, index), **options)
        for column, value in zip(by, key if isinstance(key, tuple) else (key,)):
            result.insert(0, column, value)
        frames.append(result)
    if not frames:
        raise fail("table", "at least one group of measurements", len(table))
    tests = adjust_p_values(pd.concat(frames, ignore_index=True), method=correction, alpha=alpha)
    tests["alpha"] = alpha
    return tests


__all__ = ["required_resource", "equal_error_comparisons", "equal_error_tests"]
