"""Calibration study: the stats layer checked on simulated data with a known answer (spec -> tables).

The scaling checks fit every simulated table of a batch together (``astrostats.stats.scaling``'s batched
path, held to statsmodels and scipy by the tests), so the quick profile's >= 1,000 data sets per check take
seconds. Tables: ``<name>`` (one row per check: rejection or coverage rate, Clopper-Pearson CI, target band,
``within_target``), ``<name>_simulations`` (every simulation's p-value or coverage indicator, for the
figure), ``<name>_recovery`` (fits of known laws: alpha = 0.5 without floor, alpha = 0.3 with a floor).
``astrostats.stats.calibration.judge_calibration(tables)`` says whether everything is within target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from astrostats.spec import Spec
from astrostats.stats.calibration import CHECKS, DEFAULT_OPTIONS, rate_row, simulate_check, simulate_scaling_table
from astrostats.stats.scaling import fit_scaling_law
from astrostats.studies.base import RunContext
from astrostats.validation import check_choice, check_float, check_int, fail

#: known laws the fits must recover: (alpha, e_inf, m grid); the floor needs a grid where it dominates
RECOVERY_SCENARIOS = {"power_law_alpha_0.5": (0.5, 0.0, None),
                      "floor_alpha_0.3": (0.3, 0.05, (4, 16, 64, 256, 1024, 4096, 16384, 65536))}


@dataclass(frozen=True)
class Parameters:
    n_simulations: int = 1000
    checks: tuple[str, ...] = tuple(CHECKS)
    n: int = 20
    permutation_resamples: int = 199
    delta: float = 1.0
    m_values: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    n_sequences: int = 8
    n_seeds: int = 8
    bootstrap_resamples: int = 200
    recovery_replicates: int = 10
    recovery_resamples: int = 500

    def __post_init__(self):
        check_int("n_simulations", self.n_simulations, minimum=10)
        for check in self.checks:
            check_choice("checks", check, list(CHECKS))
        check_int("n", self.n, minimum=5)
        check_int("permutation_resamples", self.permutation_resamples, minimum=19)
        check_float("delta", self.delta, minimum=0.0, strict=True)
        if len(set(self.m_values)) < 4:
            raise fail("m_values", "at least 4 distinct widths", self.m_values)
        check_int("n_sequences", self.n_sequences, minimum=2)
        check_int("n_seeds", self.n_seeds, minimum=2)
        check_int("bootstrap_resamples", self.bootstrap_resamples, minimum=20)
        check_int("recovery_replicates", self.recovery_replicates, minimum=1)
        check_int("recovery_resamples", self.recovery_resamples, minimum=20)


def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    options = {key: getattr(parameters, key) for key in DEFAULT_OPTIONS}  # every option the checks take
    rows, simulations = [], []
    for check in tqdm(parameters.checks, desc="calibration", disable=not context.progress):
        outcomes = simulate_check(check, parameters.n_simulations, seed=spec.seed, **options)
        rows.append(rate_row(check, outcomes))
        simulations.append(pd.DataFrame({"check": check, "kind": CHECKS[check][1],
                                         "simulation": np.arange(outcomes.size), "outcome": outcomes}))
    return {spec.name: pd.DataFrame(rows),
            f"{spec.name}_simulations": pd.concat(simulations, ignore_index=True),
            f"{spec.name}_recovery": recovery_table(parameters, spec.seed)}


def recovery_table(parameters: Parameters, seed: int) -> pd.DataFrame:
    """Fit each known law ``recovery_replicates`` times; does the CI of alpha (and E_inf) cover the truth?"""
    rows = []
    root = np.random.SeedSequence([seed, 99])
    children = root.spawn(len(RECOVERY_SCENARIOS) * parameters.recovery_replicates)
    for index, (scenario, (alpha, e_inf, grid)) in enumerate(RECOVERY_SCENARIOS.items()):
        for replicate in range(parameters.recovery_replicates):
            rng = np.random.default_rng(children[index * parameters.recovery_replicates + replicate])
            table = simulate_scaling_table(rng, m_values=grid or parameters.m_values, alpha=alpha, e_inf=e_inf,
                                           n_sequences=parameters.n_sequences, n_seeds=parameters.n_seeds)
            fit = fit_scaling_law(table, n_resamples=parameters.recovery_resamples, seed=rng, floor=True)
            name = "alpha_floor" if e_inf > 0 else "alpha"
            low, high = fit.intervals[name][:2]
            e_low, e_high = fit.intervals["e_inf"][:2]
            rows.append({"scenario": scenario, "replicate": replicate, "true_alpha": alpha, "true_e_inf": e_inf,
                         "parameter": name, "statistic": fit.estimates[name], "p_value": fit.tests["floor"]["p_value"],
                         "ci_low": low, "ci_high": high, "effect": fit.estimates[name] - alpha,
                         "effect_name": "alpha_hat - alpha", "n": fit.diagnostics["n"],
                         "method": "fit_scaling_law; hierarchical bootstrap percentile CI; p: floor test",
                         "covered": bool(low <= alpha <= high), "e_inf": fit.estimates["e_inf"],
                         "e_inf_ci_low": e_low, "e_inf_ci_high": e_high,
                         "e_inf_covered": bool(e_low <= e_inf <= e_high) if e_inf > 0 else True,
                         "preferred_model": fit.preferred_model,
                         "preferred_model_correct": fit.preferred_model == ("power_law_floor" if e_inf > 0 else "power_law"),
                         "status": "ok", "reason": ""})
    return pd.DataFrame(rows)
