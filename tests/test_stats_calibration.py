"""Calibration of the stats layer under simulated nulls (fixed seeds), and the calibration study (smoke).

Acceptance intervals come from the binomial SD of a rate over N simulations, sqrt(0.05 * 0.95 / N):
- exact-level tests (permutation tests, whose p = (k+1)/(B+1) is valid by construction, and TOST at the
  least favourable boundary): N = 1000, band [0.03, 0.07] = 0.05 +- 2.9 SD (the issue's band);
- the scaling tests, slower, run N = 300 on a small design and are checked for validity (not anti-
  conservative): rate <= 0.05 + 3 SD, coverage >= 0.95 - 3 SD. Their two-sided bands at N >= 1000 are
  measured by `python -m astrostats.analyze calibration` (analyses/calibration.toml).
"""
import math
from pathlib import Path

import numpy as np
import pytest

from astrostats.report.figures.calibration import draw
from astrostats.spec import load_spec
from astrostats.stats.calibration import judge_calibration, rate_row, simulate_check
from astrostats.studies import calibration as study
from astrostats.studies.base import RunContext
from astrostats.validation import InputError

SMALL = dict(m_values=(8, 16, 32, 64, 128, 256), n_sequences=6, n_seeds=6, n_bootstrap=100)


@pytest.mark.parametrize("check", ["paired_permutation", "two_sample_permutation", "equivalence_tost"])
def test_exact_level_tests_reject_five_percent_of_true_nulls(check):
    outcomes = simulate_check(check, 1000, seed=1, n_resamples=99)
    row = rate_row(check, outcomes)
    assert 0.03 <= row["statistic"] <= 0.07, row
    assert row["within_target"]


def _upper(n, rate=0.05):
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)


def test_alpha_vs_half_test_is_not_anticonservative():
    outcomes = simulate_check("alpha_vs_half", 300, seed=2, **SMALL)
    assert np.isfinite(outcomes).all()
    assert (outcomes <= 0.05).mean() <= _upper(300)


def test_floor_test_is_not_anticonservative():
    outcomes = simulate_check("floor_test", 200, seed=3, **{**SMALL, "n_bootstrap": 0})
    assert (outcomes <= 0.05).mean() <= _upper(200)


def test_bootstrap_ci_of_alpha_covers_at_least_nominally():
    outcomes = simulate_check("bootstrap_coverage", 300, seed=4, **SMALL)
    assert outcomes.mean() >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / 300)


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
