"""Scaling-law fits (astrostats.stats.scaling) on simulated tables whose law is known."""
import math

import numpy as np
import pandas as pd
import pytest

from astrostats.stats.calibration import simulate_scaling_table
from astrostats.stats.scaling import fit_scaling_law, scaling_fits_table
from astrostats.validation import InputError

DESIGN = dict(m_values=(8, 16, 32, 64, 128, 256, 512, 1024), n_sequences=8, n_seeds=6)
FLOOR_GRID = (4, 16, 64, 256, 1024, 4096, 16384, 65536)


@pytest.fixture(scope="module")
def power_fit():
    return fit_scaling_law(simulate_scaling_table(11, **DESIGN), n_bootstrap=400, seed=1)


@pytest.fixture(scope="module")
def floor_fit():
    table = simulate_scaling_table(12, **{**DESIGN, "m_values": FLOOR_GRID}, alpha=0.3, e_inf=0.05)
    return fit_scaling_law(table, n_bootstrap=300, seed=2)


def test_recovers_alpha_one_half_without_floor(power_fit):
    low, high = power_fit.intervals["alpha"][:2]
    assert low <= 0.5 <= high
    assert power_fit.preferred_model == "power_law"
    assert power_fit.tests["alpha_vs_half"]["p_value"] > 0.05 or not (low <= 0.5 <= high)
    assert len(power_fit.draws) == 400


def test_recovers_alpha_and_floor(floor_fit):
    low, high = floor_fit.intervals["alpha_floor"][:2]
    assert low <= 0.3 <= high
    e_low, e_high = floor_fit.intervals["e_inf"][:2]
    assert e_low <= 0.05 <= e_high
    assert floor_fit.preferred_model == "power_law_floor"
    assert floor_fit.tests["floor"]["p_value"] < 0.05


def test_power_law_slope_is_the_log_log_least_squares_slope():
    table = simulate_scaling_table(3, **DESIGN)
    fit = fit_scaling_law(table, n_bootstrap=0, floor=False)
    slope, intercept = np.polyfit(np.log(table.m), np.log(table.value), 1)  # balanced: FE slope = pooled slope
    assert fit.estimates["alpha"] == pytest.approx(-slope, rel=1e-10)
    assert fit.estimates["a"] == pytest.approx(math.exp(intercept), rel=1e-10)


def test_m_required_follows_the_fitted_law(power_fit, floor_fit):
    a, alpha = power_fit.estimates["a"], power_fit.estimates["alpha"]
    result = power_fit.m_required(0.1)
    assert result["estimate"] == pytest.approx((a / 0.1) ** (1 / alpha))
    assert result["ci_low"] <= result["estimate"] <= result["ci_high"] and not result["infinite"]
    unreachable = floor_fit.m_required(0.01)  # the floor 0.05 lies above 1 %
    assert unreachable["infinite"] and math.isinf(unreachable["estimate"])
    reachable = floor_fit.m_required(0.2)
    assert math.isfinite(reachable["estimate"])
    assert floor_fit.predict(reachable["estimate"]) == pytest.approx(0.2, rel=1e-8)


def test_theory_ratio_is_one_when_the_constant_is_right():
    rng = np.random.default_rng(5)
    sequence_sd, draw_sd, noise_sd = 0.3, 0.05, 0.1
    table = simulate_scaling_table(rng, **DESIGN, sequence_sd=sequence_sd, draw_sd=draw_sd, noise_sd=noise_sd)
    # E[err^2 m] = C_s^2 exp(2 (draw_sd^2 + noise_sd^2)) for log-normal noise; recover each C_s from the table
    log_c = (np.log(table.value) + 0.5 * np.log(table.m)).groupby(table.sequence_id).mean()
    constants = np.exp(log_c) * math.exp(draw_sd ** 2 + noise_sd ** 2)
    fit = fit_scaling_law(table, n_bootstrap=400, seed=3, predicted_constant=constants, floor=False)
    low, high = fit.intervals["theory_ratio"][:2]
    assert low <= 1.0 <= high
    doubled = fit_scaling_law(table, n_bootstrap=400, seed=3, predicted_constant=2 * constants, floor=False)
    assert doubled.estimates["theory_ratio"] == pytest.approx(fit.estimates["theory_ratio"] / 2)


def test_to_frame_is_tidy(power_fit):
    frame = power_fit.to_frame()
    assert list(frame.columns[:7]) == ["statistic", "p_value", "ci_low", "ci_high", "effect", "n", "method"]
    assert {"alpha", "a", "e_inf", "m_required_10pct", "m_required_1pct"} <= set(frame["parameter"])
    assert "alpha" in frame.attrs["draws"]


def test_same_seed_same_fit():
    table = simulate_scaling_table(7, **DESIGN)
    first = fit_scaling_law(table, n_bootstrap=50, seed=4)
    second = fit_scaling_law(table, n_bootstrap=50, seed=4)
    pd.testing.assert_frame_equal(first.draws, second.draws)


def _runner_table():
    frames = []
    for seed, feature, law in ((21, "positive", dict(alpha=0.5)), (22, "trigonometric", dict(alpha=0.4))):
        table = simulate_scaling_table(seed, m_values=(8, 32, 128, 512), n_sequences=4, n_seeds=4, **law)
        frames.append(table.assign(feature_map=feature, logit_scale="typical", metric="relative_error"))
    short = simulate_scaling_table(1, m_values=(8, 32), n_sequences=4, n_seeds=4)
    frames.append(short.assign(feature_map="hyperbolic", logit_scale="typical", metric="relative_error"))
    zero = simulate_scaling_table(2, m_values=(8, 32, 128, 512), n_sequences=4, n_seeds=4)
    zero.loc[0, "value"] = 0.0
    frames.append(zero.assign(feature_map="orthogonal", logit_scale="typical", metric="relative_error"))
    return pd.concat(frames, ignore_index=True)


def test_scaling_fits_table_one_row_per_group_and_flags():
    table = _runner_table()
    constants = pd.DataFrame({"feature_map": "positive", "logit_scale": "typical", "sequence_id": range(4),
                              "predicted_constant": 1.0})
    fits = scaling_fits_table(table, predicted_constants=constants, n_bootstrap=100, seed=0)
    assert len(fits) == 4
    by_map = fits.set_index("feature_map")
    assert by_map.loc["hyperbolic", "status"] == "insufficient_data" and "3 distinct m" in by_map.loc["hyperbolic", "reason"]
    assert by_map.loc["orthogonal", "status"] == "insufficient_data" and "positive" in by_map.loc["orthogonal", "reason"]
    ok = fits[fits.status == "ok"]
    for column in ("alpha", "alpha_ci_low", "a", "e_inf", "preferred_model", "floor_p_value", "alpha_vs_half_p_value",
                   "m_required_10pct", "m_required_1pct_ci_high"):
        assert ok[column].notna().all(), column
    assert math.isfinite(by_map.loc["positive", "theory_ratio"])
    assert by_map.loc["trigonometric", "theory_ratio_status"] == "no predicted constants for this group"


@pytest.mark.parametrize("mutate, name", [
    (lambda t: t.assign(value=np.where(t.index == 3, np.nan, t.value)), "value"),
    (lambda t: t.assign(value=np.where(t.index == 3, np.inf, t.value)), "value"),
    (lambda t: t.assign(m=np.where(t.index == 3, -8, t.m)), "m"),
    (lambda t: t.drop(columns="seed"), "seed"),
])
def test_bad_tables_raise(mutate, name):
    table = mutate(simulate_scaling_table(0, m_values=(8, 32, 128, 512), n_sequences=4, n_seeds=3))
    with pytest.raises(InputError, match=name):
        fit_scaling_law(table, n_bootstrap=20)


def test_nan_in_a_runner_table_is_an_error_and_bad_options_are_named():
    table = _runner_table()
    table.loc[5, "value"] = np.nan
    with pytest.raises(InputError, match="value"):
        scaling_fits_table(table, n_bootstrap=20)
    with pytest.raises(InputError, match="n_bootstrap"):
        fit_scaling_law(simulate_scaling_table(0), n_bootstrap=5)
    exact = simulate_scaling_table(0, sequence_sd=0, draw_sd=0, noise_sd=0)
    with pytest.raises(InputError, match="zero variance"):
        fit_scaling_law(exact, n_bootstrap=20)
