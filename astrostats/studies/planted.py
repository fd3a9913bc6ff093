"""Planted data for the known-answers analysis, kept apart from the claims they test.

A claim module states and applies its rule; the data that validate the rule are built here, by the analysis,
so that a scenario can never be tuned inside the module whose rule it judges (issue 27, point 6). Nothing in
``astrostats.claims`` imports this module.

C7 (moved here from ``astrostats.claims.c7_alternatives``): equal-error tables of the astrocyte circuit against
one neurons-only comparator, errors C / sqrt(m) x noise, as a circuits run writes them (the registered primary
family, the registered pre-registration hash): a comparator with constant C needs (C / 4)^2 times the astrocyte
circuit's plastic synapses.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from astrostats.constants import DEFAULT_CIRCUIT
from astrostats.claims.c7_alternatives import REGISTERED_SHA256  # the hash the rule checks, not a planted helper
from astrostats.stats.equal_error import equal_error_tests

#: the registration the planted C7 tables are compared under (analyses/circuits.toml's numbers)
C7_REGISTRATION = {"epsilon": 0.10, "margin": 0.10, "alpha": 0.05, "min_units": 4, "min_levels": 3}
C7_M = (16, 64, 256, 1024, 4096, 16384)


def row_factors(family: str, rng: np.random.Generator, shape, sd: float, *, t_df: float = 3.0,
                gamma_shape: float = 1.0) -> np.ndarray:
    """Per-row multiplicative noise of median about 1: log-normal exp(N(0, sd)) (the fitted model's), Student-t
    1 + s T (T ~ t_df, SD sd, cut at 0.05 to stay positive) or gamma 1 + sd (G - k) / sqrt(k), G ~ Gamma(k)
    (SD sd, skewness 2 / sqrt(k))."""
    if family == "lognormal":
        return np.exp(rng.normal(0.0, sd, shape))
    if family == "student_t":
        return np.maximum(1.0 + sd / np.sqrt(t_df / (t_df - 2.0)) * rng.standard_t(t_df, shape), 0.05)
    if family == "gamma":
        return 1.0 + sd * (rng.gamma(gamma_shape, 1.0, shape) - gamma_shape) / np.sqrt(gamma_shape)
    raise ValueError(f"family: one of lognormal, student_t, gamma, not {family!r}")


def c7_measurements(rng: np.random.Generator, comparator_constant: float, *, n_sequences: int = 8,
                    n_seeds: int = 4, heads: int = 2, noise: float = 0.05, m_values=C7_M,
                    family: str = "lognormal", t_df: float = 3.0, gamma_shape: float = 1.0) -> pd.DataFrame:
    """Errors C / sqrt(m) x a log-normal sequence effect x a per-row factor of ``family`` (:func:`row_factors`,
    SD noise / 2) per (head, circuit, sequence) and seed, for the astrocyte circuit (C = 4: 10 % error at
    m = 1,600) and one comparator ("interneuron_sampled", C = comparator_constant), both with 65 plastic synapses
    per hidden unit: the comparator needs (C / 4)^2 times the astrocyte's synapses."""
    rows = []
    for head in range(heads):
        for circuit, constant in ((DEFAULT_CIRCUIT, 4.0), ("interneuron_sampled", comparator_constant)):
            sequence_effect = rng.normal(0.0, noise, n_sequences)
            for m in m_values:
                seed_effect = row_factors(family, rng, (n_seeds, n_sequences), noise / 2, t_df=t_df,
                                          gamma_shape=gamma_shape)
                error = constant / np.sqrt(m) * np.exp(sequence_effect[None]) * seed_effect
                for seed in range(n_seeds):
                    rows += [{"analysed_head": f"planted/head{head}", "curve": circuit, "m": m, "seed": seed,
                              "sequence_id": sequence, "value": error[seed, sequence], "plastic_synapses": 65 * m}
                             for sequence in range(n_sequences)]
    return pd.DataFrame(rows)


def c7_tests(measurements: pd.DataFrame, seed: int, n_resamples: int = 999) -> pd.DataFrame:
    """The primary family on planted measurements, as a circuits run writes it (registered hash included)."""
    registration = C7_REGISTRATION
    tests = equal_error_tests(measurements, by=["analysed_head"], reference=DEFAULT_CIRCUIT,
                              resource_col="plastic_synapses", epsilon=registration["epsilon"],
                              margin=registration["margin"], alpha=registration["alpha"], n_resamples=n_resamples,
                              seed=seed, min_units=registration["min_units"], min_levels=registration["min_levels"])
    tests.insert(1, "family", "primary")
    tests["preregistration_sha256"] = REGISTERED_SHA256
    return tests


#: known-answer cases for C7: name -> (the verdict the rule must give, comparator constant, options)
C7_CASES = {
    "astrocyte circuit 4x cheaper (comparator constant 8)": ("SUPPORTED", 8.0, {}),
    "neurons-only circuit 7x cheaper (comparator constant 1.5)": ("NOT_SUPPORTED", 1.5, {}),
    "equal cost under heavy sequence noise": ("INCONCLUSIVE", 4.0, {"noise": 0.6, "n_sequences": 5}),
    "two sequences per head (below the 4 the rule needs)": ("INSUFFICIENT_DATA", 8.0, {"n_sequences": 2}),
}


def c7_case(case: str, rng: np.random.Generator, **noise) -> dict:
    """The tables C7's ``judge`` reads for one case of :data:`C7_CASES` (``noise``: family, t_df, gamma_shape)."""
    _, constant, options = C7_CASES[case]
    measurements = c7_measurements(rng, constant, **options, **noise)
    return {"circuits_tests": c7_tests(measurements, seed=int(rng.integers(2**31)))}


def c7_cases(rng: np.random.Generator) -> list[tuple[str, str, dict]]:
    """Known answers for C7: (case, the verdict the rule must give, tables for C7's ``judge``)."""
    return [(case, expected, c7_case(case, rng)) for case, (expected, _, _) in C7_CASES.items()]


__all__ = ["C7_REGISTRATION", "C7_CASES", "row_factors", "c7_measurements", "c7_tests", "c7_case", "c7_cases"]
