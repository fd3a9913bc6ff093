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

from astrostats.stats.effects import equivalence_test, tost_p_value
from astrostats.stats.resampling import paired_mean_test, paired_permutation_test, two_sample_permutation_test
from astrostats.stats.scaling_batch import FitDesign, floor_test_batch, power_law_batch, power_law_bootstrap, scaling_design
from astrostats.validation import check_choice, check_float, check_int, fail

SIGNIFICANCE = 0.05  # the nominal size of every false-positive check
RATE_BAND = (0.03, 0.07)
MIN_SIMULATIONS = 1000  # the bands are +-2.9 binomial SDs at n = 1000; fewer simulations cannot show calibration
COVERAGE_BAND = (0.93, 0.97)


NOISE_KINDS = ("normal", "heavy", "skewed")


def _noise(rng: np.random.Generator, kind: str, sd: float, shape) -> np.ndarray:
    """Mean-zero shifts of log error with standard deviation sd: Gaussian, t(3) (heavy tails) or a centred
    exponential (skewness 2)."""
    if kind == "normal":
        return rng.normal(0, sd, shape)
    if kind == "heavy":
        return sd * rng.standard_t(3, shape) / np.sqrt(3.0)
    return sd * (rng.exponential(1.0, shape) - 1.0)


def simulate_scaling_table(seed: Any, *, m_values: Sequence[int] = (8, 16, 32, 64, 128, 256), n_sequences: int = 8,
                           n_seeds: int = 4, alpha: float = 0.5, constant: float = 1.0, e_inf: float = 0.0,
                           sequence_sd: float = 0.3, draw_sd: float = 0.05, noise_sd: float = 0.1,
                           slope_sd: float = 0.0, noise: str = "normal", curvature: float = 0.0,
                           heteroscedastic: float = 0.0, hard_share: float = 0.0, hard_ratio: float = 10.0) -> pd.DataFrame:
    """A runner-shaped error table with known law err = e_inf + C_s m^-alpha_s (log-normal noise).

    log C_s = log constant + N(0, sequence_sd^2) per sequence (some sequences are harder); alpha_s = alpha +
    N(0, slope_sd^2) (sequences whose error falls at different rates; the population exponent is alpha);
    each feature draw (m, seed) shifts every sequence's log error by N(0, draw_sd^2) (the runner shares draws
    across sequences); each row adds N(0, noise_sd^2).

    Misspecified laws, each off by default: ``noise`` "heavy" (t(3)) or "skewed" (centred exponential) shifts
    for draws and rows; ``curvature`` kappa adds kappa (log m - mean log m)^2 (a bend in log-log, symmetric
    about the grid's centre); ``heteroscedastic`` h scales each sequence's row noise by exp(h N(0, 1));
    ``hard_share`` w mixes hard tokens whose error saturates: err^2 = (1 - w) e^2 + w min(1, (ratio e)^2).
    ``expected_log`` holds the law without the draw and row shifts (the truth the fits estimate).

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
    draw_effect = _noise(rng, noise, draw_sd, (m_values.size, n_seeds))
    s, mi, r = (grid.ravel() for grid in np.meshgrid(np.arange(n_sequences), np.arange(m_values.size),
                                                       np.arange(n_seeds), indexing="ij"))
    row_noise = _noise(rng, noise, noise_sd, s.size)
    slopes = alpha + (rng.normal(0, slope_sd, n_sequences) if slope_sd > 0 else np.zeros(n_sequences))
    if heteroscedastic > 0:
        row_noise = row_noise * np.exp(heteroscedastic * rng.normal(0, 1, n_sequences))[s]
    log_m = np.log(m_values)
    law = np.log(constant) + sequence_effect[s] - slopes[s] * log_m[mi]
    if hard_share > 0:
        law = 0.5 * np.log((1 - hard_share) * np.exp(2 * law) + hard_share * np.minimum(1.0, hard_ratio ** 2 * np.exp(2 * law)))
    law = law + curvature * (log_m[mi] - log_m.mean()) ** 2
    log_power = law + draw_effect[mi, r] + row_noise
    return pd.DataFrame({"sequence_id": s, "seed": r, "m": m_values[mi].astype(np.int64),
                         "value": e_inf + np.exp(log_power), "expected_log": np.log(e_inf + np.exp(law))})


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


def _paired_mean(sigma: float) -> Callable[[np.random.Generator, dict], float]:
    """Bootstrap-t test on lognormal(0, sigma) differences minus their mean: skewed, mean exactly zero."""
    def check(rng: np.random.Generator, options: dict) -> float:
        d = rng.lognormal(0.0, sigma, options["n"]) - np.exp(sigma ** 2 / 2)
        return float(paired_mean_test(d, n_resamples=options["permutation_resamples"], seed=rng)["p_value"].item())
    return check


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


POPULATION_SEQUENCES = 20_000  # sequences in the noise-free table that gives a law's population exponent


def true_alpha(m_values: Sequence[int], **law: Any) -> float:
    """The exponent a fit of ``law`` estimates: minus the fixed-effects slope of the noise-free law over a
    population of sequences (the CI is for the population, not for the sequences a table happened to draw).
    1/2 where the law is a power law or bent symmetrically about the grid's centre; for saturating hard
    tokens, the pre-asymptotic exponent of that grid."""
    law = {key: value for key, value in law.items() if key not in ("noise", "heteroscedastic")}
    table = simulate_scaling_table(0, m_values=m_values, n_sequences=POPULATION_SEQUENCES, n_seeds=1, draw_sd=0.0,
                                   noise_sd=0.0, **law)
    layout = scaling_design(table, cluster_cols=("sequence_id",))
    return float(-(table["expected_log"].to_numpy() @ layout.centred_log_m) / (layout.centred_log_m ** 2).sum())


def _alpha_vs_half(generators: list, options: dict) -> np.ndarray:
    return power_law_batch(*_tables(generators, options))["p_vs_half"]


def _floor_test(generators: list, options: dict) -> np.ndarray:
    return floor_test_batch(*_tables(generators, options))["p_value"]


def _alpha_tost(generators: list, options: dict) -> np.ndarray:
    """TOST of alpha in 1/2 +- 0.1 (claim C1's) with the true alpha on the margin 0.6: rejecting is a false
    positive."""
    fit = power_law_batch(*_tables(generators, options, alpha=0.5 + TOST_MARGIN))
    return np.array([tost_p_value(alpha, se, df, low=0.5 - TOST_MARGIN, high=0.5 + TOST_MARGIN)
                     for alpha, se, df in zip(fit["alpha"], fit["alpha_se"], fit["df"])])


def _coverage(generators: list, options: dict, **law: Any) -> np.ndarray:
    """1.0 where the hierarchical bootstrap CI of alpha covers the law's true alpha (a 'success'), else 0.0."""
    layout, log_values = _tables(generators, options, **law)
    truth = true_alpha(options["m_values"], **law)
    result = power_law_bootstrap(layout, log_values, options["bootstrap_resamples"], generators)
    return ((result["ci_low"] <= truth) & (truth <= result["ci_high"])).astype(np.float64)


def _coverage_of(**law: Any) -> Callable[[list, dict], np.ndarray]:
    return lambda generators, options: _coverage(generators, options, **law)


SLOPE_SD = 0.01  # sequence exponents spread as much as the draw noise moves alpha: both the sequences and the draws carry variance
TOST_MARGIN = 0.1
#: misspecified laws (simulate_scaling_table's options) under which the exponent's CI must still cover
MISSPECIFIED = {"curvature": ({"curvature": 0.02}, "a bend in log-log (kappa = 0.02: 0.2 in log error at the ends)"),
                "heavy_tails": ({"noise": "heavy"}, "t(3) draw and row shifts"),
                "skewed": ({"noise": "skewed"}, "centred exponential draw and row shifts (skewness 2)"),
                "heteroscedastic": ({"heteroscedastic": 0.7}, "row noise SD differing by sequence, exp(0.7 N(0, 1))"),
                "hard_tokens": ({"hard_share": 0.1, "hard_ratio": 10.0},
                                "10 % hard tokens whose error saturates at 1 until m = 100 C^2 (pre-asymptotic)")}

#: check -> (outcomes of a batch of simulated data sets, one Generator each: p-values or coverage
#: indicators; kind; description)
CHECKS: dict[str, tuple[Callable[[list, dict], np.ndarray], str, str]] = {
    "paired_permutation": (_each(_paired_permutation), "false_positive_rate",
                           "sign-flip test of symmetry about 0, symmetric t(3) differences (null true)"),
    "paired_mean_test": (_each(_paired_mean(0.5)), "false_positive_rate",
                         "bootstrap-t test of a zero mean, lognormal(0, 0.5) differences centred (skewness 1.8; null true)"),
    "paired_mean_test_extreme_skew": (_each(_paired_mean(1.0)), "false_positive_rate",
                                      "as paired_mean_test, lognormal(0, 1) (skewness 6.2; the sign-flip test rejects "
                                      "13 % here)"),
    "two_sample_permutation": (_each(_two_sample_permutation), "false_positive_rate",
                               "label permutation test, two exponential samples of one law (null true)"),
    "equivalence_tost": (_each(_equivalence_boundary), "false_positive_rate",
                         "TOST with the true difference on the margin delta (null true, least favourable)"),
    "alpha_vs_half": (_alpha_vs_half, "false_positive_rate",
                      "cluster-robust t-test of alpha = 1/2 on simulated scaling tables with alpha = 1/2"),
    "alpha_tost": (_alpha_tost, "false_positive_rate",
                   f"TOST of alpha in 1/2 +- {TOST_MARGIN} with the true alpha on the margin (null true, least favourable)"),
    "floor_test": (_floor_test, "false_positive_rate",
                   "LR F-test of E_inf = 0 on simulated scaling tables without a floor"),
    "bootstrap_coverage": (_coverage, "coverage",
                           "hierarchical bootstrap 95 % CI of alpha covers the true 1/2"),
    "bootstrap_coverage_sequence_slopes": (_coverage_of(slope_sd=SLOPE_SD), "coverage",
                                           f"as bootstrap_coverage, sequences' own exponents spread N(1/2, {SLOPE_SD}^2)"),
    **{f"bootstrap_coverage_{name}": (_coverage_of(**law), "coverage",
                                      f"as bootstrap_coverage, misspecified: {text}; truth: the fit's target exponent")
       for name, (law, text) in MISSPECIFIED.items()},
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
