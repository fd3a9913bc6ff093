"""The result of a scaling-law fit: estimates, CIs, tests, diagnostics and bootstrap draws, and the m at
which the fitted law reaches a tolerance (:meth:`ScalingFit.m_required`).

Produced by :func:`astrostats.stats.scaling.fit_scaling_law`; holds no fitting code.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from astrostats.stats._common import result_frame
from astrostats.stats.resampling import bootstrap_interval
from astrostats.validation import check_choice, check_float


def epsilon_label(epsilon: float) -> str:
    """0.1 -> '10pct', 0.01 -> '1pct', 0.005 -> '0p5pct' (column-name friendly).

    Examples
    --------
    >>> from astrostats.stats import epsilon_label
    >>> epsilon_label(0.1), epsilon_label(0.005)
    ('10pct', '0p5pct')
    """
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
        estimate = float(m_required_draws(self.estimates, epsilon, model))
        draws = m_required_draws(self.draws, epsilon, model).to_numpy(dtype=np.float64)
        draws = draws[~np.isnan(draws)]
        if draws.size < 2:
            low = high = math.nan  # no bootstrap was run (n_resamples=0): the interval is absent, not zero-width
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
                    "n_resamples", "floor_status", "theory_ratio_status"):
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
                     "alpha_floor": ("power_law_floor", "least-squares NLS on per-m mean log errors (the fit the floor test used)"),
                     "a_floor": ("power_law_floor", "least-squares NLS on per-m mean log errors (the fit the floor test used)"),
                     "e_inf": ("power_law_floor", "least-squares NLS; p: LR F-test of E_inf = 0 (boundary mixture)"),
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


def m_required_draws(params: Mapping | pd.DataFrame, epsilon: float, model: str):
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
