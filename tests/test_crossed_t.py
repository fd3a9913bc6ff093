"""The crossed design's t-test (astrostats.stats.crossed.crossed_t_test): its arithmetic against a hand
computation, its size at a true null on planted log-normal grids of 4 feature draws x 8 sequences (the quick and
full profiles' design), and its power.

Tolerances are Monte Carlo ones: with R planted grids a rejection rate p has standard error sqrt(p (1 - p) / R);
each bound is the nominal 5 % (or, where the test is known to exceed it, the rate measured when the test was
written) plus 3 standard errors.
"""
import numpy as np
import pytest
from scipy import stats

from astrostats.stats.crossed import crossed_bootstrap, crossed_t_test

TOLERANCE = 0.1
REPLICATES = 4000


def planted_grids(draw_sd, sequence_sd, residual_sd, level, seed, draws=4, sequences=8):
    """Log-normal errors exp(a_draw + b_sequence + e): population mean level x the tolerance."""
    rng = np.random.default_rng(seed)
    log = (rng.normal(0, draw_sd, (REPLICATES, draws, 1)) + rng.normal(0, sequence_sd, (REPLICATES, 1, sequences))
           + rng.normal(0, residual_sd, (REPLICATES, draws, sequences)))
    return np.exp(log - (draw_sd ** 2 + sequence_sd ** 2 + residual_sd ** 2) / 2) * TOLERANCE * level


def rejection_rate(grids, side="p_below"):
    return float((crossed_t_test(grids, TOLERANCE)[side] < 0.05).mean())


def bound(rate):
    return rate + 3 * np.sqrt(rate * (1 - rate) / REPLICATES)


def test_the_statistic_is_the_two_way_mean_squares_with_satterthwaite_degrees_of_freedom():
    grid = np.array([[0.11, 0.14, 0.09], [0.12, 0.16, 0.10]])
    table = crossed_t_test(grid[None], TOLERANCE)
    mean = grid.mean()
    draws = 3 * ((grid.mean(1) - mean) ** 2).sum() / 1
    sequences = 2 * ((grid.mean(0) - mean) ** 2).sum() / 2
    se = np.sqrt((draws + sequences) / 6)
    df = (draws + sequences) ** 2 / (draws ** 2 / 1 + sequences ** 2 / 2)
    assert table["statistic"][0] == pytest.approx(mean) and table["se"][0] == pytest.approx(se)
    assert table["df"][0] == pytest.approx(df) and 1 <= df <= 3
    assert table["p_above"][0] == pytest.approx(stats.t.sf((mean - TOLERANCE) / se, df))
    assert table["p_below"][0] == pytest.approx(1 - table["p_above"][0])


def test_a_missing_cell_drops_its_sequence_and_too_few_left_is_nan():
    grid = np.arange(1.0, 13.0).reshape(1, 3, 4) / 10
    grid[0, 1, 2] = np.nan
    complete = np.delete(grid, 2, axis=2)
    assert crossed_t_test(grid, 0.5)["se"][0] == pytest.approx(crossed_t_test(complete, 0.5)["se"][0])
    assert np.isnan(crossed_t_test(grid[:, :1], 0.5)["p_below"][0])  # one draw: no spread to test against
    padded = np.concatenate([complete, np.full((1, 1, 3), np.nan)], axis=1)  # a seed with no value (NaN padding)
    assert crossed_t_test(padded, 0.5)["se"][0] == pytest.approx(crossed_t_test(complete, 0.5)["se"][0])


def test_size_at_a_true_null_with_real_heads_mix_of_spread():
    """A head whose mean error is exactly the tolerance is called below it, or above it, in at most 5 % of grids
    (to Monte Carlo error) with MiniLM's spread at m = 1e5 (mean squares of draws, sequences and residual about
    1 : 1 : 0.44). Measured: 4.9 % below, 1.7 % above."""
    grids = planted_grids(0.098, 0.139, 0.247, level=1.0, seed=1)
    assert rejection_rate(grids, "p_below") <= bound(0.05)
    assert rejection_rate(grids, "p_above") <= bound(0.05)


def test_where_draws_dominate_it_rejects_less_than_the_bootstrap_it_replaced():
    """Skewed errors whose 4 draws carry most of the spread (the known answers' planted model): calling a head
    below the threshold is a known excess over 5 % (measured 7.0 % on 4,000 grids), pinned here so that a change
    that worsens it fails; above it the nominal 5 % holds (measured 3.9 %); on the first 800 of the grids the
    crossed bootstrap's p (the rule before the amendment) rejects more often (12-13 %)."""
    grids = planted_grids(0.15, 0.05, 0.10, level=1.0, seed=1)
    assert rejection_rate(grids, "p_below") <= bound(0.070)
    assert rejection_rate(grids, "p_above") <= bound(0.05)
    subset = grids[:800]
    bootstrap = np.mean([crossed_bootstrap(grid[None], TOLERANCE, n_resamples=499, seed=i)[0]["p_below"][0] < 0.05
                         for i, grid in enumerate(subset)])
    t_rate = float((crossed_t_test(subset, TOLERANCE)["p_below"] < 0.05).mean())
    # paired on the same grids: the difference's standard error is below sqrt(p_b (1 - p_b) / 800) = 0.012
    assert t_rate < bootstrap - 3 * np.sqrt(bootstrap * (1 - bootstrap) / len(subset)) / 2, (t_rate, bootstrap)


def test_no_spread_decides_by_the_mean_alone():
    flat = np.full((3, 4, 8), 0.1)
    flat[0] = 0.05
    flat[2] = 0.2
    table = crossed_t_test(flat, TOLERANCE)
    assert table["p_below"].tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-12)  # rounding leaves ~1e-18 spread
    assert table["p_above"].tolist() == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)


def test_power_at_four_fifths_of_the_tolerance():
    grids = planted_grids(0.098, 0.139, 0.247, level=0.8, seed=2)
    rate = rejection_rate(grids)
    assert rate >= 0.76 - 3 * np.sqrt(0.76 * 0.24 / REPLICATES)
