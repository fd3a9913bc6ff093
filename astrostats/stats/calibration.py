"""Calibration by simulation: do the tests hold their level, do the CIs cover, do the fits recover truth?

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
from astrostats.stats.scaling import fit_scaling_law
from astrostats.validation import check_choice, check_float, check_int, fail

LEVEL = 0.05
RATE_BAND = (0.03, 0.07)
MIN_SIMULATIONS = 1000  # the bands are +-2.9 binomial SDs at n = 1000; fewer simulations cannot show calibration
COVERAGE_BAND = (0.93, 0.97)


def simulate_scaling_table(seed: Any, *, m_values: Sequence[int] = (8, 16, 32, 64, 128, 256), n_sequences: int = 8,
                           n_seeds: int = 4, alpha: float = 0.5, constant: float = 1.0, e_inf: float = 0.0,
                           sequence_sd: float = 0.3, draw_sd: float = 0.05, noise_sd: float = 0.1) -> pd.DataFrame:
    """A runner-shaped error table with known law err = e_inf + C_s m^-alpha (log-normal noise).

    log C_s = log constant + N(0, sequence_sd^2) per sequence (some sequences are harder); each feature draw
    (m, seed) shifts every sequence's log error by N(0, draw_sd^2) (the runner shares draws across
    sequences); each row adds N(0, noise_sd^2).
    """
    rng = np.random.default_rng(seed)
    m_values = np.asarray(m_values, dtype=np.float64)
    sequence_effect = rng.normal(0, sequence_sd, n_sequences)
    draw_effect = rng.normal(0, draw_sd, (m_values.size, n_seeds))
    s, mi, r = (grid.ravel() for grid in np.meshgrid(np.arange(n_sequences), np.arange(m_values.size),
                                                       np.arange(n_seeds), indexing="ij"))
    log_power = (np.log(constant) + sequence_effect[s] - alpha * np.log(m_values[mi]) + draw_effect[mi, r]
                 + rng.normal(0, noise_sd, s.size))
    return pd.DataFrame({"sequence_id": s, "seed": r, "m": m_values[mi].astype(np.int64),
                         "value": e_inf + np.exp(log_power)})


# ---------------------------------------------------------------- one simulated data set per call

def _paired_permutation(rng: np.random.Generator, options: dict) -> float:
    d = rng.standard_t(3, options["n"])  # symmetric, heavy-tailed null
    return float(paired_permutation_test(d, n_resamples=options["n_resamples"], seed=rng)["p_value"].item())


def _two_sample_permutation(rng: np.random.Generator, options: dict) -> float:
    x, y = rng.exponential(size=options["n"]), rng.exponential(size=options["n"] + 5)  # skewed, same law
    return float(two_sample_permutation_test(x, y, n_resamples=options["n_resamples"], seed=rng)["p_value"].item())


def _equivalence_boundary(rng: np.random.Generator, options: dict) -> float:
    """TOST at the boundary of H0: true difference = delta, so rejecting is a false positive."""
    differences = rng.normal(options["delta"], 1.0, options["n"])
    return float(equivalence_test(differences, delta=options["delta"])["p_value"].item())


def _scaling(rng: np.random.Generator, options: dict, *, alpha: float, e_inf: float, floor: bool):
    table = simulate_scaling_table(rng, m_values=options["m_values"], n_sequences=options["n_sequences"],
                                   n_seeds=options["n_seeds"], alpha=alpha, e_inf=e_inf)
    return fit_scaling_law(table, n_bootstrap=options["n_bootstrap"], seed=rng, floor=floor)


def _alpha_vs_half(rng: np.random.Generator, options: dict) -> float:
    return float(_scaling(rng, options, alpha=0.5, e_inf=0.0, floor=False).tests["alpha_vs_half"]["p_value"])


def _floor_test(rng: np.random.Generator, options: dict) -> float:
    return float(_scaling(rng, options, alpha=0.5, e_inf=0.0, floor=True).tests["floor"]["p_value"])


def _bootstrap_coverage(rng: np.random.Generator, options: dict) -> float:
    """1.0 when the hierarchical bootstrap CI of alpha covers the true 0.5 (a 'success'), else 0.0."""
    low, high = _scaling(rng, options, alpha=0.5, e_inf=0.0, floor=False).intervals["alpha"][:2]
    return float(low <= 0.5 <= high)


#: check -> (simulate one data set and return its p-value or coverage indicator, kind, description)
CHECKS: dict[str, tuple[Callable[[np.random.Generator, dict], float], str, str]] = {
    "paired_permutation": (_paired_permutation, "false_positive_rate",
                           "sign-flip test, symmetric t(3) differences (null true)"),
    "two_sample_permutation": (_two_sample_permutation, "false_positive_rate",
                               "label permutation test, two exponential samples of one law (null true)"),
    "equivalence_tost": (_equivalence_boundary, "false_positive_rate",
                         "TOST with the true difference on the margin delta (null true, least favourable)"),
    "alpha_vs_half": (_alpha_vs_half, "false_positive_rate",
                      "cluster-robust t-test of alpha = 1/2 on simulated scaling tables with alpha = 1/2"),
    "floor_test": (_floor_test, "false_positive_rate",
                   "LR F-test of E_inf = 0 on simulated scaling tables without a floor"),
    "bootstrap_coverage": (_bootstrap_coverage, "coverage",
                           "hierarchical bootstrap 95 % CI of alpha covers the true 1/2"),
}

DEFAULT_OPTIONS = {"n": 20, "n_resamples": 199, "delta": 1.0, "m_values": (8, 16, 32, 64, 128, 256),
                   "n_sequences": 8, "n_seeds": 4, "n_bootstrap": 200}


def simulate_check(check: str, n_simulations: int, seed: Any = 0, **options: Any) -> np.ndarray:
    """Per-simulation outcomes of one check: p-values (false-positive checks) or 0/1 coverage indicators."""
    check = check_choice("check", check, list(CHECKS))
    n_simulations = check_int("n_simulations", n_simulations, minimum=10)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise fail("options", f"keys among {sorted(DEFAULT_OPTIONS)}", unknown)
    merged = {**DEFAULT_OPTIONS, **options}
    function = CHECKS[check][0]
    root = np.random.SeedSequence([check_int("seed", seed, minimum=0), list(CHECKS).index(check)])
    return np.array([function(np.random.default_rng(child), merged) for child in root.spawn(n_simulations)])


def rate_row(check: str, outcomes: np.ndarray, *, level: float = LEVEL, confidence: float = 0.95) -> dict:
    """One calibration row: observed rate, Clopper-Pearson CI, binomial test against the nominal rate, verdict."""
    kind, description = CHECKS[check][1], CHECKS[check][2]
    level = check_float("level", level, minimum=0.0, strict=True, maximum=0.5)
    n = int(outcomes.size)
    hits = int((outcomes <= level).sum()) if kind == "false_positive_rate" else int(outcomes.sum())
    nominal, band = (level, RATE_BAND) if kind == "false_positive_rate" else (0.95, COVERAGE_BAND)
    if kind == "false_positive_rate" and level != LEVEL:
        band = (level * RATE_BAND[0] / LEVEL, level * RATE_BAND[1] / LEVEL)
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
