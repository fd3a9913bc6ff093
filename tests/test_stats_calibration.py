"""Calibration of the stats layer under simulated nulls (fixed seeds), and the calibration study (smoke).

Acceptance intervals come from the binomial SD of a rate over N simulations, sqrt(0.05 * 0.95 / N):
at N = 1000 the issue's bands [0.03, 0.07] (rates) and [0.93, 0.97] (95 % coverage) are +-2.9 SD.
The scaling checks run on the quick calibration design (10 widths, 8 sequences x 8 feature seeds; the
batched fits make 1,000 data sets take seconds).
"""
import math
from pathlib import Path

import numpy as np
import pytest

from astrostats.report.figures.calibration import draw
from astrostats.spec import load_spec
from astrostats.stats.calibration import judge_calibration, rate_row, simulate_check
from astrostats.stats.resampling import paired_permutation_test
from astrostats.studies import calibration as study
from astrostats.studies.base import RunContext
from astrostats.validation import InputError

pytestmark = pytest.mark.slow  # thousands of simulated data sets

QUICK = dict(m_values=(8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096), n_sequences=8, n_seeds=8, bootstrap_resamples=500)


@pytest.mark.parametrize("check", ["paired_permutation", "two_sample_permutation", "equivalence_tost"])
def test_exact_level_tests_reject_five_percent_of_true_nulls(check):
    outcomes = simulate_check(check, 1000, seed=1, permutation_resamples=99)
    row = rate_row(check, outcomes)
    assert 0.03 <= row["statistic"] <= 0.07, row
    assert row["within_target"]


def test_floor_test_rejects_five_percent_of_true_nulls():
    outcomes = simulate_check("floor_test", 1000, seed=2, **QUICK)
    assert np.isfinite(outcomes).all()
    row = rate_row("floor_test", outcomes)
    assert row["within_target"], row


def test_alpha_vs_half_test_holds_its_level():
    """Two-way cluster-robust t with min(G) - 1 = 7 df: valid, and mildly conservative (about 3 %) when the
    sequence level carries little variance; fail if it is anticonservative or conservative beyond 4 SD."""
    outcomes = simulate_check("alpha_vs_half", 1000, seed=2, **QUICK)
    rate, sd = (outcomes <= 0.05).mean(), math.sqrt(0.05 * 0.95 / 1000)
    assert 0.05 - 4 * sd <= rate <= 0.07, rate


@pytest.mark.parametrize("check", ["bootstrap_coverage", "bootstrap_coverage_sequence_slopes"])
def test_bootstrap_ci_of_alpha_covers_in_band(check):
    outcomes = simulate_check(check, 1000, seed=4, **QUICK)
    row = rate_row(check, outcomes)
    assert row["within_target"], row


def test_alpha_ci_covers_with_two_feature_seeds_per_width():
    """Issue 13: with 6 widths x 2 seeds the draw component rests on about 3.5 degrees of freedom; the
    percentile interval that treated its variance as known covered 87 %. Widened by t/z at the
    Satterthwaite df it must be in band."""
    outcomes = simulate_check("bootstrap_coverage", 1000, seed=6, n_seeds=2, bootstrap_resamples=500)
    assert rate_row("bootstrap_coverage", outcomes)["within_target"]


def test_alpha_tost_holds_its_level_on_the_margin():
    row = rate_row("alpha_tost", simulate_check("alpha_tost", 1000, seed=7, **QUICK))
    assert row["ci_low"] <= 0.05 + 0.02 and row["statistic"] <= 0.07, row


def test_mean_test_holds_its_level_where_the_sign_flip_test_does_not():
    """Skewed differences with mean zero: the bootstrap-t test of the mean is in band; the sign-flip test,
    a test of symmetry, rejects far more than 5 % (the issue measured 13.5 % at lognormal(0, 1))."""
    mean = rate_row("paired_mean_test", simulate_check("paired_mean_test", 1000, seed=8, permutation_resamples=199))
    assert mean["within_target"], mean
    rng = np.random.default_rng(9)
    flips = [paired_permutation_test(rng.lognormal(0, 1, 20) - math.exp(0.5), n_resamples=199, seed=rng)
             ["p_value"].item() <= 0.05 for _ in range(400)]
    assert np.mean(flips) > 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


@pytest.mark.slow
@pytest.mark.parametrize("check", ["bootstrap_coverage_curvature", "bootstrap_coverage_heavy_tails",
                                   "bootstrap_coverage_skewed", "bootstrap_coverage_hard_tokens"])
def test_alpha_ci_covers_under_misspecified_laws(check):
    row = rate_row(check, simulate_check(check, 1000, seed=10, **QUICK))
    assert row["within_target"], row


def test_heteroscedastic_sequences_leave_the_ci_conservative_not_short():
    row = rate_row("bootstrap_coverage_heteroscedastic",
                   simulate_check("bootstrap_coverage_heteroscedastic", 1000, seed=11, n_seeds=4, bootstrap_resamples=300))
    assert row["statistic"] >= 0.93, row


def test_simulations_are_reproducible_and_checked():
    np.testing.assert_array_equal(simulate_check("paired_permutation", 20, seed=5),
                                  simulate_check("paired_permutation", 20, seed=5))
    with pytest.raises(InputError, match="check"):
        simulate_check("t_test", 20)
    with pytest.raises(InputError, match="options"):
        simulate_check("paired_permutation", 20, sample_size=3)


def test_smoke_study_tables_judge_and_figures(tmp_path):
    spec = load_spec(Path(__file__).resolve().parent.parent / "analyses" / "calibration.toml", "smoke")
    tables = study.run(spec, RunContext(out_dir=tmp_path, progress=False))
    assert set(tables) == {"calibration", "calibration_simulations", "calibration_recovery"}
    rates = tables["calibration"]
    assert {"statistic", "p_value", "ci_low", "ci_high", "effect", "n", "method", "within_target"} <= set(rates.columns)
    assert (rates["ci_low"] <= rates["statistic"]).all() and (rates["statistic"] <= rates["ci_high"]).all()
    verdict = judge_calibration(tables)
    assert verdict["calibrated"] is False and "simulations" in verdict["reason"]  # 40 simulations cannot show it
    assert judge_calibration({})["calibrated"] is False
    again = study.run(spec, RunContext(out_dir=tmp_path, progress=False))
    assert again["calibration"].equals(tables["calibration"])
    figures = draw(tables)
    assert set(figures) == {"calibration_rates", "calibration_null_p_values", "calibration_recovery"}
