"""Calibration by simulation: do the tests hold their nominal size, do the CIs cover, do the fits recover truth?

Each check simulates data sets where the answer is known (a null that is true, or a known exponent),
applies the package's own functions unchanged, and reports the rate of rejections (or of coverage) with a
Clopper-Pearson binomial CI and whether it lies in the target band (nominal 0.05 -> [0.03, 0.07]; 95 %
coverage -> [0.93, 0.97], the issue's acceptance bands). Every simulation has its own seed, spawned from one
SeedSequence, so the tables are identical for the same seed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint
from scipy import stats

from astrostats.stats.effects import equivalence_test
from astrostats.stats.resampling import paired_permutation_test, two_sample_permutation_test
from astrostats.stats.scaling_batch import FitDesign, floor_test_batch, power_law_batch, power_law_bootstrap, scaling_design
from astrostats.validation import check_choice, check_float, check_int, fail

SIGNIFICANCE = 0.05  # the nominal size of every false-positive check
RATE_BAND = (0.03, 0.07)
MIN_SIMULATIONS = 1000  # the bands are +-2.9 binomial SDs at n = 1000; fewer simulations cannot show calibration
COVERAGE_BAND = (0.93, 0.97)


def simulate_scaling_table(seed: Any, *, m_values: Sequence[int] = (8, 16, 32, 64, 128, 256), n_sequences: int = 8,
                           n_seeds: int = 4, alpha: float = 0.5, constant: float = 1.0, e_inf: float = 0.0,
                           sequence_sd: float = 0.3, draw_sd: float = 0.05, noise_sd: float = 0.1,
                           slope_sd: float = 0.0) -> pd.DataFrame:
    """A runner-shaped error table with known law err = e_inf + C_s m^-alpha_s (log-normal noise).

    log C_s = log constant + N(0, sequence_sd^2) per sequence (some sequences are harder); alpha_s = alpha +
    N(0, slope_sd^2) (sequences whose error falls at different rates; the population exponent is alpha);
    each feature draw (m, seed) shifts every sequence's log error by N(0, draw_sd^2) (the runner shares draws
    across sequences); each row adds N(0, noise_sd^2).

    Examples
    --------
    >>> from astrostats.stats import simulate_scaling_table
    >>> table = simulate_scaling_table(0, m_values=(8, 64), n_sequences=2, n_seeds=3)
    >>> len(table), sorted(table["m"].unique().tolist())
    (12, [8, 64])
    """
    rng = np.random.default_rng(seed)
    m_values = np.asarray(m_values, dtype=np.float64)
    sequence_effect = rng.normal(0, sequence_sd, n_sequences)
    draw_effect = rng.normal(0, draw_sd, (m_values.size, n_seeds))
    s, mi, r = (grid.ravel() for grid in np.meshgrid(np.arange(n_sequences), np.arange(m_values.size),
                                                       np.arange(n_seeds), indexing="ij"))
    noise = rng.normal(0, noise_sd, s.size)
    slopes = alpha + (rng.normal(0, slope_sd, n_sequences) if slope_sd > 0 else np.zeros(n_sequences))
    log_power = np.log(constant) + sequence_effect[s] - slopes[s] * np.log(m_values[mi]) + draw_effect[mi, r] + noise
    return pd.DataFrame({"sequence_id": s, "seed": r, "m": m_values[mi].astype(np.int64),
                         "value": e_inf + np.exp(log_power)})


def simulate_scaling_batch(generators: Sequence[np.random.Generator], **law: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """Many simulated tables of one layout: (the first table, the log errors of every table, one row each).

    Each Generator makes its table exactly as :func:`simulate_scaling_table` would (and is left in the same
    state), so that the batched fits can be held to :func:`fit_scaling_law` table by table.
    """
    tables = [simulate_scaling_table(rng, **law) for rng in generators]
    return tables[0], np.log(np.stack([table["value"].to_numpy() for table in tables]))


# ---------------------------------------------------------------- the checks, each over a batch of data sets

def _each(function: Callable[[np.random.Generator, dict], float]) -> Callable[[list, dict], np.ndarray]:
    """A check on one data set per Generator, looped (the resampling tests are fast one at a time)."""
    return lambda generators, options: np.array([function(rng, options) for rng in generators])


def _paired_permutation(rng: np.random.Generator, options: dict) -> float:
    d = rng.standard_t(3, options["n"])  # symmetric, heavy-tailed null
    return float(paired_permutation_test(d, n_resamples=options["permutation_resamples"], seed=rng)["p_value"].item())


def _two_sample_permutation(rng: np.random.Generator, options: dict) -> float:
    x, y = rng.exponential(size=options["n"]), rng.exponential(size=options["n"] + 5)  # skewed, same law
    return float(two_sample_permutation_test(x, y, n_resamples=options["permutation_resamples"], seed=rng)["p_value"].item())


def _equivalence_boundary(rng: np.random.Generator, options: dict) -> float:
    """TOST at the boundary of H0: true difference = delta, so rejecting is a false positive."""
    differences = rng.normal(options["delta"], 1.0, options["n"])
    return float(equivalence_test(differences, delta=options["delta"])["p_value"].item())


def _tables(generators: list, options: dict, **law: Any) -> tuple[FitDesign, np.ndarray]:
    first, log_values = simulate_scaling_batch(generators, m_values=options["m_values"],
                                               n_sequences=options["n_sequences"], n_seeds=options["n_seeds"], **law)
    return scaling_design(first), log_values


def _alpha_vs_half(generators: list, options: dict) -> np.ndarray:
    return power_law_batch(*_tables(generators, options))["p_vs_half"]


def _floor_test(generators: list, options: dict) -> np.ndarray:
    return floor_test_batch(*_tables(generators, options))["p_value"]


def _coverage(generators: list, options: dict, slope_sd: float = 0.0) -> np.ndarray:
    """1.0 where the hierarchical bootstrap CI of alpha covers the true 1/2 (a 'success'), else 0.0."""
    layout, log_values = _tables(generators, options, slope_sd=slope_sd)
    result = power_law_bootstrap(layout, log_values, options["bootstrap_resamples"], generators)
    return ((result["ci_low"] <= 0.5) & (0.5 <= result["ci_high"])).astype(np.float64)


SLOPE_SD = 0.01  # sequence exponents spread as much as the draw noise moves alpha: both the sequences and the draws carry variance

#: check -> (outcomes of a batch of simulated data sets, one Generator each: p-values or coverage
#: indicators; kind; description)
CHECKS: dict[str, tuple[Callable[[list, dict], np.ndarray], str, str]] = {
    "paired_permutation": (_each(_paired_permutation), "false_positive_rate",
                           "sign-flip test, symmetric t(3) differences (null true)"),
    "two_sample_permutation": (_each(_two_sample_permutation), "false_positive_rate",
                               "label permutation test, two exponential samples of one law (null true)"),
    "equivalence_tost": (_each(_equivalence_boundary), "false_positive_rate",
                         "TOST with the true difference on the margin delta (null true, least favourable)"),
    "alpha_vs_half": (_alpha_vs_half, "false_positive_rate",
                      "cluster-robust t-test of alpha = 1/2 on simulated scaling tables with alpha = 1/2"),
    "floor_test": (_floor_test, "false_positive_rate",
                   "LR F-test of E_inf = 0 on simulated scaling tables without a floor"),
    "bootstrap_coverage": (_coverage, "coverage",
                           "hierarchical bootstrap 95 % CI of alpha covers the true 1/2"),
    "bootstrap_coverage_sequence_slopes": (lambda generators, options: _coverage(generators, options, SLOPE_SD),
                                           "coverage",
                                           f"as bootstrap_coverage, sequences' own exponents spread N(1/2, {SLOPE_SD}^2)"),
}
BATCH = 500  # simulated data sets per batch: bounds memory (the full profile runs 5,000)

DEFAULT_OPTIONS = {"n": 20, "permutation_resamples": 199, "delta": 1.0, "m_values": (8, 16, 32, 64, 128, 256),
                   "n_sequences": 8, "n_seeds": 4, "bootstrap_resamples": 200}


def simulate_check(check: str, n_simulations: int, seed: Any = 0, **options: Any) -> np.ndarray:
    """Per-simulation outcomes of one check: p-values (false-positive checks) or 0/1 coverage indicators.

    Simulation i uses the i-th child of SeedSequence([seed, check index]) for its data and its resampling;
    batches of :data:`BATCH` data sets are fitted together.

    Examples
    --------
    >>> from astrostats.stats import simulate_check
    >>> p_values = simulate_check("paired_permutation", 50, seed=0, permutation_resamples=99)
    >>> p_values.shape, bool(((p_values > 0) & (p_values <= 1)).all())
    ((50,), True)
    """
    check = check_choice("check", check, list(CHECKS))
    n_simulations = check_int("n_simulations", n_simulations, minimum=10)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise fail("options", f"keys among {sorted(DEFAULT_OPTIONS)}", unknown)
    merged = {**DEFAULT_OPTIONS, **options}
    function = CHECKS[check][0]
    root = np.random.SeedSequence([check_int("seed", seed, minimum=0), list(CHECKS).index(check)])
    generators = [np.random.default_rng(child) for child in root.spawn(n_simulations)]
    return np.concatenate([function(generators[start:start + BATCH], merged)
                           for start in range(0, n_simulations, BATCH)])


def rate_row(check: str, outcomes: np.ndarray, *, significance: float = SIGNIFICANCE, confidence: float = 0.95) -> dict:
    """One calibration row: observed rate, Clopper-Pearson CI, binomial test against the nominal rate, verdict."""
    kind, description = CHECKS[check][1], CHECKS[check][2]
    significance = check_float("significance", significance, minimum=0.0, strict=True, maximum=0.5)
    n = int(outcomes.size)
    hits = int((outcomes <= significance).sum()) if kind == "false_positive_rate" else int(outcomes.sum())
    nominal, band = (significance, RATE_BAND) if kind == "false_positive_rate" else (0.95, COVERAGE_BAND)
    if kind == "false_positive_rate" and significance != SIGNIFICANCE:
        band = (significance * RATE_BAND[0] / SIGNIFICANCE, significance * RATE_BAND[1] / SIGNIFICANCE)
    low, high = proportion_confint(hits, n, alpha=1 - confidence, method="beta")
    rate = hits / n
    binomial = stats.binomtest(hits, n, nominal)
    return {"check": check, "kind": kind, "statistic": rate, "p_value": float(binomial.pvalue),
            "ci_low": float(low), "ci_high": float(high), "effect": rate - nominal,
            "effect_name": "rate - nominal", "n": n, "method": f"{description}; Clopper-Pearson CI, binomial test",
            "nominal": nominal, "target_low": band[0], "target_high": band[1],
            "within_target": bool(band[0] <= rate <= band[1]),
            "binomial_sd": float(np.sqrt(nominal * (1 - nominal) / n)), "status": "ok", "reason": ""}


def judge_calibration(tables: dict[str, pd.DataFrame], name: str = "calibration") -> dict:
    """{"calibrated": bool, "failures": [checks outside their band], "checks": n, "reason": str}."""
    table = tables.get(name)
    if table is None or table.empty or "within_target" not in table:
        return {"calibrated": False, "failures": [], "checks": 0,
                "reason": f"table {name!r} missing: run `python -m astrostats.analyze calibration`"}
    failures = table.loc[~table["within_target"].astype(bool), "check"].tolist()
    failures += [f"{row.check} (only {row.n} simulations, need {MIN_SIMULATIONS})"
                 for row in table.itertuples() if row.n < MIN_SIMULATIONS]
    recovery = tables.get(f"{name}_recovery")
    if recovery is not None and not recovery.empty:
        # a 95 % CI misses in 5 % of replicates; fail only beyond the 99th percentile of Binomial(R, 0.05) misses
        for scenario, group in recovery.groupby("scenario"):
            misses = int((~group["covered"].astype(bool)).sum())
            if misses > stats.binom.ppf(0.99, len(group), 0.05):
                failures.append(f"recovery:{scenario} ({misses} of {len(group)} CIs miss the true alpha)")
    return {"calibrated": not failures, "failures": failures, "checks": int(len(table)),
            "reason": "every check within its band" if not failures else f"outside band: {failures}"}
