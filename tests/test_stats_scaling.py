"""Scaling-law fits (astrostats.stats.scaling) on simulated tables whose law is known."""
import math

import numpy as np
import pandas as pd
import pytest

from astrostats.stats.calibration import simulate_scaling_batch, simulate_scaling_table
from astrostats.stats.scaling import _fit_floor, fit_scaling_law, log_spread_trend, rms_rate, scaling_fits_table
from astrostats.stats.scaling_batch import (_solve_steps, fit_floor_batch, floor_test_batch, power_law_batch,
                                            power_law_bootstrap, scaling_design)
from astrostats.validation import InputError

DESIGN = dict(m_values=(8, 16, 32, 64, 128, 256, 512, 1024), n_sequences=8, n_seeds=6)
FLOOR_GRID = (4, 16, 64, 256, 1024, 4096, 16384, 65536)
Z_SCORE = 4.0  # tolerance in standard errors: a false alarm about once in 16,000 runs


@pytest.fixture(scope="module")
def power_fit():
    return fit_scaling_law(simulate_scaling_table(11, **DESIGN), n_resamples=400, seed=1)


@pytest.fixture(scope="module")
def floor_fit():
    table = simulate_scaling_table(12, **{**DESIGN, "m_values": FLOOR_GRID}, alpha=0.3, e_inf=0.05)
    return fit_scaling_law(table, n_resamples=300, seed=2)


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
    fit = fit_scaling_law(table, n_resamples=0, floor=False)
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
    fit = fit_scaling_law(table, n_resamples=400, seed=3, predicted_constant=constants, floor=False)
    low, high = fit.intervals["theory_ratio"][:2]
    assert low <= 1.0 <= high
    doubled = fit_scaling_law(table, n_resamples=400, seed=3, predicted_constant=2 * constants, floor=False)
    assert doubled.estimates["theory_ratio"] == pytest.approx(fit.estimates["theory_ratio"] / 2)


def test_to_frame_is_tidy(power_fit):
    frame = power_fit.to_frame()
    assert list(frame.columns[:7]) == ["statistic", "p_value", "ci_low", "ci_high", "effect", "n", "method"]
    assert {"alpha", "a", "e_inf", "m_required_10pct", "m_required_1pct"} <= set(frame["parameter"])
    assert "alpha" in frame.attrs["draws"]


def test_same_seed_same_fit():
    table = simulate_scaling_table(7, **DESIGN)
    first = fit_scaling_law(table, n_resamples=50, seed=4)
    second = fit_scaling_law(table, n_resamples=50, seed=4)
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
    fits = scaling_fits_table(table, predicted_constants=constants, n_resamples=100, seed=0)
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
        fit_scaling_law(table, n_resamples=20)


def test_nan_in_a_runner_table_is_an_error_and_bad_options_are_named():
    table = _runner_table()
    table.loc[5, "value"] = np.nan
    with pytest.raises(InputError, match="value"):
        scaling_fits_table(table, n_resamples=20)
    with pytest.raises(InputError, match="n_resamples"):
        fit_scaling_law(simulate_scaling_table(0), n_resamples=5)
    exact = simulate_scaling_table(0, sequence_sd=0, draw_sd=0, noise_sd=0)
    with pytest.raises(InputError, match="zero variance"):
        fit_scaling_law(exact, n_resamples=20)


# ---------------------------------------------------------------- the batched path against statsmodels and scipy

def _stack(tables):
    return np.log(np.stack([table["value"].to_numpy() for table in tables]))


@pytest.mark.parametrize("cluster_cols", [("sequence_id", "seed"), ("sequence_id",), ()])
def test_batched_power_law_matches_statsmodels(cluster_cols):
    tables = [simulate_scaling_table(100 + index, **DESIGN, slope_sd=0.02 * index) for index in range(4)]
    layout = scaling_design(tables[0], cluster_cols=cluster_cols)
    batch = power_law_batch(layout, _stack(tables))
    for index, table in enumerate(tables):
        fit = fit_scaling_law(table, cluster_cols=cluster_cols, n_resamples=0, floor=False)
        assert batch["alpha"][index] == pytest.approx(fit.estimates["alpha"], rel=1e-10)
        assert math.exp(batch["log_a"][index]) == pytest.approx(fit.estimates["a"], rel=1e-10)
        assert batch["alpha_se"][index] == pytest.approx(fit.diagnostics["alpha_se_cluster"], rel=1e-9)
        assert batch["df"][index] == fit.diagnostics["df_inference"]
        assert batch["p_vs_half"][index] == pytest.approx(fit.tests["alpha_vs_half"]["p_value"], rel=1e-8, abs=1e-14)


def test_batched_floor_test_matches_scipy():
    laws = (dict(alpha=0.5), dict(alpha=0.5), dict(alpha=0.3, e_inf=0.02), dict(alpha=0.3, e_inf=0.05))
    tables = [simulate_scaling_table(200 + index, m_values=FLOOR_GRID, n_sequences=4, n_seeds=4, **law)
              for index, law in enumerate(laws)]
    batch = floor_test_batch(scaling_design(tables[0]), _stack(tables))
    for index, table in enumerate(tables):
        fit = fit_scaling_law(table, n_resamples=0)
        assert batch["p_value"][index] == pytest.approx(fit.tests["floor"]["p_value"], rel=1e-6, abs=1e-12)
        for name in ("alpha_floor", "a_floor", "e_inf"):
            assert batch[name][index] == pytest.approx(fit.estimates[name], rel=1e-5, abs=1e-9), name
    assert batch["p_value"][3] < 0.05 < batch["p_value"][0]


def test_batched_floor_solver_reaches_the_least_squares_minimum():
    rng = np.random.default_rng(8)
    log_m = np.log(np.array(FLOOR_GRID, dtype=np.float64))
    truth = np.column_stack([rng.normal(0, 0.3, 6), rng.uniform(0.2, 0.8, 6), rng.uniform(0, 0.05, 6)])
    means = np.logaddexp(np.log(truth[:, 2:]), truth[:, :1] - truth[:, 1:2] * log_m) + rng.normal(0, 0.05, (6, 8))
    counts = rng.integers(1, 5, (6, 8)).astype(np.float64)
    starts = np.column_stack([np.zeros(6), np.full(6, 0.5), np.full(6, 0.01)])
    for loss in ("linear", "soft_l1"):
        fitted, rss = fit_floor_batch(log_m, means, counts, starts, np.full(6, 0.1), loss=loss)
        for row in range(6):
            reference, _ = _fit_floor(log_m, means[row], counts[row], [starts[row]], 0.1, loss=loss)
            np.testing.assert_allclose(fitted[row], reference, rtol=1e-5, atol=1e-8)


def test_floor_solver_survives_an_exactly_singular_step():
    """At alpha = 0 the Jacobian's log A and E_inf columns are proportional: a bootstrap draw of a flat real head
    (SmolLM2) gave an exactly singular system, which stopped the whole batch. Now it takes least-norm steps."""
    share = np.array([1.0, 1.0, 1.0, 1.0])
    jacobian = np.stack([share, -np.log([64, 256, 1024, 4096]) * share, 0.857 * share], axis=-1)
    singular = jacobian.T @ jacobian
    regular = singular + np.diag([1.0, 2.0, 3.0])
    systems, right = np.stack([regular, singular]), np.array([[1.0, -2.0, 0.5], [1.0, 7.0, 0.857]])
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.solve(systems, right[..., None])
    steps = _solve_steps(systems, right)
    assert np.allclose(steps[0], np.linalg.solve(regular, right[0]), rtol=1e-10)
    assert np.allclose(steps[1], np.linalg.pinv(singular) @ right[1], rtol=1e-10)


def test_batched_bootstrap_draws_are_those_of_fit_scaling_law():
    tables = [simulate_scaling_table(300 + index, **DESIGN, slope_sd=0.01) for index in range(3)]
    batch = power_law_bootstrap(scaling_design(tables[0]), _stack(tables), 200,
                                [np.random.default_rng(9 + index) for index in range(3)])
    for index, table in enumerate(tables):
        fit = fit_scaling_law(table, n_resamples=200, seed=np.random.default_rng(9 + index), floor=False)
        np.testing.assert_allclose(batch["alpha_draws"][index], fit.draws["alpha"], rtol=1e-10)
        assert (batch["ci_low"][index], batch["ci_high"][index]) == pytest.approx(fit.intervals["alpha"][:2], rel=1e-10)
        assert batch["shrinkage"][index] == pytest.approx(fit.diagnostics["sequence_shrinkage"])


def test_bootstrap_sd_of_alpha_matches_its_sampling_sd():
    """The diagnosis of the old over-coverage: the crossed bootstrap's SD was 1.16 x the true SD."""
    generators = [np.random.default_rng(child) for child in np.random.SeedSequence(10).spawn(600)]
    first, log_values = simulate_scaling_batch(generators, **DESIGN)
    layout = scaling_design(first)
    estimates = power_law_batch(layout, log_values)["alpha"]
    boot = power_law_bootstrap(layout, log_values, 200, generators)["alpha_draws"].var(axis=1, ddof=1)
    true = estimates.var(ddof=1)
    # var of a sample variance of 600 normal estimates: 2 sigma^4 / 599; the mean bootstrap variance is far
    # more precise, so the band is the sampling error of `true` alone
    assert abs(boot.mean() / true - 1) <= Z_SCORE * math.sqrt(2 / 599)


def test_the_log_spread_trend_recovers_a_planted_growth_and_contains_zero_without_one():
    """log SD of the log errors planted as 0.2 (m / 64)^0.25 over 8 widths x 400 rows: the slope's 95 % CI holds
    0.25; a constant SD's holds 0. Fewer than 3 widths: NaN with the reason; bad input: an InputError naming it."""
    rng = np.random.default_rng(3)
    m = np.repeat(2.0 ** np.arange(6, 14), 400)
    growing = np.exp(0.2 * (m / 64) ** 0.25 * rng.standard_normal(m.size))
    trend = log_spread_trend(m, growing)
    assert trend["spread_slope_ci_low"] <= 0.25 <= trend["spread_slope_ci_high"] and trend["spread_slope_ci_low"] > 0
    flat = log_spread_trend(m, np.exp(0.2 * rng.standard_normal(m.size)))
    assert flat["spread_slope_ci_low"] <= 0 <= flat["spread_slope_ci_high"]
    short = log_spread_trend(m[m < 256], growing[m < 256])
    assert math.isnan(short["spread_slope"]) and "need >= 3" in short["spread_reason"]
    with pytest.raises(InputError, match="values"):
        log_spread_trend(m, -growing)
    with pytest.raises(InputError, match="m, values"):
        log_spread_trend(m, growing[:-1])


def test_the_rms_rate_is_the_root_mean_square_errors_where_the_log_fit_is_the_typical_errors():
    """Errors C_s m^-1/2 x a log-normal factor of mean square 1 whose log-SD grows as 0.2 (m / 64)^0.25: the RMS
    error falls as m^-1/2 exactly, the geometric-mean one faster. 8 widths x 8 draws x 50 sequences: alpha_rms's
    95 % CI holds 0.5, while the slope of the mean log error lies above it by more than 4 of alpha_rms's SEs.
    Fewer than 3 widths, or a sequence missing from one cell (its constant would then move the slope): NaN with
    the reason; bad input (a value, a missing draw, a confidence outside (0, 1)): an InputError naming it."""
    rng = np.random.default_rng(5)
    m, draw, sequence = (a.ravel() for a in np.meshgrid(2.0 ** np.arange(6, 14), np.arange(8), np.arange(50),
                                                       indexing="ij"))
    constants = np.exp(0.3 * rng.standard_normal(50))[sequence]
    sd = 0.2 * (m / 64) ** 0.25
    errors = constants / np.sqrt(m) * np.exp(-sd ** 2 + sd * rng.standard_normal(m.size))
    rate = rms_rate(m, draw, sequence, errors)
    assert rate["alpha_rms_ci_low"] <= 0.5 <= rate["alpha_rms_ci_high"] and rate["alpha_rms_reason"] == ""
    log_slope = -np.polyfit(np.log(m), np.log(errors), 1)[0]
    assert (log_slope - 0.5) / rate["alpha_rms_se"] > Z_SCORE
    short = m < 256
    assert "need >= 3 widths" in rms_rate(m[short], draw[short], sequence[short], errors[short])["alpha_rms_reason"]
    with pytest.raises(InputError, match="values"):
        rms_rate(m, draw, sequence, np.where(m == 64, np.nan, errors))
    with pytest.raises(InputError, match="m, draw, sequence, values"):
        rms_rate(m, draw[:-1], sequence, errors)
    with pytest.raises(InputError, match="draw, sequence"):
        rms_rate(m, np.where(m == 64, np.nan, draw), sequence, errors)
    gap = ~((m == 1024) & (draw == 3) & (sequence == 7))
    gapped = rms_rate(m[gap], draw[gap], sequence[gap], errors[gap])
    assert math.isnan(gapped["alpha_rms"]) and "49 distinct at m = 1024, draw 3" in gapped["alpha_rms_reason"]
    with pytest.raises(InputError, match="confidence"):
        rms_rate(m, draw, sequence, errors, confidence=1.5)
    with pytest.raises(InputError, match="m: expected a 1-D array of numbers"):
        rms_rate(["64", "x"], [0, 0], [0, 0], [0.1, 0.1])
    with pytest.raises(InputError, match="values: expected a 1-D array of numbers"):
        log_spread_trend([64, 128], ["a", "b"])


def test_the_rms_rate_takes_any_table_to_a_result_or_an_error_that_names_its_input():
    """Generated tables (values that may be 0, negative, NaN or inf; cells that may lack a sequence): rms_rate
    returns a finite rate or a NaN with its reason, or raises an InputError, never another exception."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.just(-1.0))

    @settings(max_examples=150, deadline=None)
    @given(values=st.lists(number, min_size=1, max_size=24), widths=st.integers(1, 4), drop=st.integers(0, 30))
    def check(values, widths, drop):
        rows = [(64.0 * 2 ** (i % widths), i // widths % 2, i // (2 * widths), v) for i, v in enumerate(values)]
        rows = [row for position, row in enumerate(rows) if position != drop]
        if not rows:
            return
        m, draw, sequence, value = (list(column) for column in zip(*rows))
        try:
            rate = rms_rate(m, draw, sequence, value)
        except InputError:
            return
        assert math.isfinite(rate["alpha_rms"]) or rate["alpha_rms_reason"]

    check()
