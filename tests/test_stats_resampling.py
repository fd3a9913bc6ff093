"""Resampling tests, bootstrap intervals, effect sizes and multiple-testing correction (astrostats.stats).

Tolerances are Monte-Carlo standard errors (z <= 4, i.e. a false alarm about once in 16,000 runs) or
exact identities; every check can fail.
"""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from astrostats import stats as S
from astrostats.validation import InputError

Z = 4.0


def test_result_frames_have_the_standard_columns():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    frames = [S.paired_permutation_test(a, b, n_resamples=199), S.two_sample_permutation_test(a, b, n_resamples=199),
              S.error_ratio(a ** 2 + 1, b ** 2 + 1, n_resamples=199), S.paired_standardised_difference(a, b, n_resamples=199),
              S.cliffs_delta(a, b, n_resamples=199), S.equivalence_test(a, b, delta=1.0)]
    for frame in frames:
        assert list(frame.columns[:7]) == list(S.RESULT_COLUMNS)
        assert {"effect_name", "status", "reason"} <= set(frame.columns)
        assert len(frame) == 1
    # results concatenate (draws in attrs compare by identity, so concat drops them instead of failing)
    assert len(pd.concat(frames, ignore_index=True)) == len(frames)


def test_exact_sign_flip_matches_brute_force_enumeration():
    d = np.array([0.3, -0.1, 0.8, 0.45, 0.2, -0.05, 0.6])
    observed = abs(d.mean())
    brute = [abs((np.array(signs) * d).mean()) >= observed - 1e-12 for signs in itertools.product([-1, 1], repeat=d.size)]
    result = S.paired_permutation_test(d, n_resamples=2 ** d.size)
    assert "exact" in result["method"].item()
    assert result["p_value"].item() == pytest.approx(np.mean(brute), abs=1e-12)
    assert result["p_value_mc_se"].item() == 0.0
    one_sided = [(np.array(signs) * d).mean() >= d.mean() - 1e-12 for signs in itertools.product([-1, 1], repeat=d.size)]
    greater = S.paired_permutation_test(d, n_resamples=2 ** d.size, alternative="greater")
    assert greater["p_value"].item() == pytest.approx(np.mean(one_sided), abs=1e-12)


def test_sign_flip_null_has_the_right_moments_and_is_reproducible():
    rng = np.random.default_rng(1)
    d = rng.exponential(size=101)  # not a multiple of 8: exercises the zero padding
    sums, exact = S.sign_flip_sums(d, n_resamples=20000, seed=3)
    assert not exact
    variance = (d ** 2).sum()  # Var(sum s_i d_i) = sum d_i^2, mean 0
    assert abs(sums.mean()) <= Z * math.sqrt(variance / sums.size)
    # the SE of a sample variance is about variance * sqrt(2 / B) for a near-normal sum
    assert abs(sums.var() - variance) <= Z * variance * math.sqrt(2 / sums.size)
    again, _ = S.sign_flip_sums(d, n_resamples=20000, seed=3)
    np.testing.assert_array_equal(sums, again)


def test_paired_p_value_agrees_with_scipy_within_monte_carlo_error():
    rng = np.random.default_rng(2)
    a = rng.normal(0.15, 1.0, 300)
    b = rng.normal(0.0, 1.0, 300)
    ours = S.paired_permutation_test(a, b, n_resamples=4000, seed=5)
    reference = stats.permutation_test((a - b,), lambda x, axis: x.mean(axis=axis), permutation_type="samples",
                                       n_resamples=4000, vectorized=True, random_state=7)
    p, se = ours["p_value"].item(), ours["p_value_mc_se"].item()
    se_reference = math.sqrt(reference.pvalue * (1 - reference.pvalue) / 4000)
    assert abs(p - reference.pvalue) <= Z * math.hypot(se, se_reference)
    assert len(ours.attrs["draws"]["null"]) == 4000


def test_p_value_is_never_zero():
    result = S.paired_permutation_test(np.full(200, 1.0) + np.linspace(0, 0.1, 200), n_resamples=999, seed=0)
    assert result["p_value"].item() == pytest.approx(1 / 1000)


def test_two_sample_permutation_agrees_with_scipy():
    rng = np.random.default_rng(4)
    x, y = rng.normal(0.3, 1, 40), rng.normal(0, 1.5, 55)
    ours = S.two_sample_permutation_test(x, y, n_resamples=4000, seed=1)
    reference = stats.permutation_test((x, y), lambda u, v, axis: u.mean(axis=axis) - v.mean(axis=axis),
                                       n_resamples=4000, vectorized=True, random_state=2)
    se_reference = math.sqrt(reference.pvalue * (1 - reference.pvalue) / 4000)
    assert abs(ours["p_value"].item() - reference.pvalue) <= Z * math.hypot(ours["p_value_mc_se"].item(), se_reference)
    assert ours["statistic"].item() == pytest.approx(x.mean() - y.mean())


def _design(n_sequences=12, n_seeds=6, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame([(s, r) for s in range(n_sequences) for r in range(n_seeds)], columns=["sequence_id", "seed"])
    table["value"] = rng.normal(size=n_sequences)[table.sequence_id] + rng.normal(scale=0.5, size=len(table))
    return table


def test_hierarchical_weights_keep_the_design():
    table = _design()
    nested = S.hierarchical_weights(table, ["sequence_id", "seed"], 300, seed=0)
    crossed = S.hierarchical_weights(table, ["sequence_id", "seed"], 300, seed=0, design="crossed")
    # balanced design: every resample has as many rows as the data (nested), or its square over n (crossed)
    np.testing.assert_array_equal(nested.sum(axis=1), len(table))
    np.testing.assert_array_equal(crossed.sum(axis=1), 12 * 6)
    # a sequence drawn c times contributes c * n_seeds rows
    outer = S.hierarchical_weights(table, ["sequence_id"], 300, seed=0)
    per_sequence = nested.reshape(300, 12, 6).sum(axis=2)
    np.testing.assert_array_equal(per_sequence, outer.reshape(300, 12, 6)[:, :, 0] * 6)


def test_nested_inner_counts_have_the_two_stage_law():
    # 10 sequences, one with 3 seeds and the rest with 4: a sequence's count c ~ Binomial(10, 1/10) (mean 1, variance
    # 0.9); a row's weight given c is Binomial(c * k, 1/k), so its variance is 0.9 + (1 - 1/k): 1.65 (k=4), 1.567 (k=3)
    table = _design(n_sequences=10, n_seeds=4).iloc[:-1]
    weights = S.hierarchical_weights(table, ["sequence_id", "seed"], 40000, seed=3)
    for row, k in ((0, 4), (len(table) - 1, 3)):
        w = weights[:, row]
        expected = 0.9 + (1 - 1 / k)
        assert abs(w.mean() - 1) <= Z * w.std() / math.sqrt(w.size)
        assert abs(w.var() - expected) <= Z * math.sqrt(((w - w.mean()) ** 4).mean() - w.var() ** 2) / math.sqrt(w.size)


def test_cluster_bootstrap_variance_matches_the_closed_form():
    table = _design(n_sequences=15, n_seeds=4, seed=1)
    result = S.hierarchical_bootstrap(table, clusters=["sequence_id"], n_resamples=4000, seed=2, method="percentile")
    draws = result.attrs["draws"]["bootstrap"]
    cluster_means = table.groupby("sequence_id")["value"].mean()
    exact = cluster_means.var(ddof=0) / cluster_means.size  # bootstrap variance of the mean of cluster means
    assert abs(draws.var() - exact) <= Z * exact * math.sqrt(2 / draws.size)
    assert result["statistic"].item() == pytest.approx(table.value.mean())
    assert result["ci_low"].item() < table.value.mean() < result["ci_high"].item()


def test_rescaled_weights_keep_stratum_totals_and_give_an_unbiased_variance():
    values = np.random.default_rng(3).normal(size=8)
    strata = np.repeat([0, 1, 2], [8, 8, 1])
    weights = S.rescaled_cluster_weights(17, 20000, seed=4, strata=strata)
    # n_h - 1 draws weighted n_h / (n_h - 1): each stratum keeps its total; a lone unit keeps weight 1
    np.testing.assert_allclose(weights[:, :16].reshape(20000, 2, 8).sum(axis=2), 8.0)
    np.testing.assert_array_equal(weights[:, 16], 1.0)
    means = weights[:, :8] @ values / 8
    exact = values.var(ddof=1) / 8  # s^2 / n; the n-out-of-n bootstrap gives (n - 1) / n of it
    squared = (means - means.mean()) ** 2
    assert abs(squared.mean() - exact) <= Z * squared.std() / math.sqrt(squared.size)
    assert abs(squared.mean() - exact * 7 / 8) > Z * squared.std() / math.sqrt(squared.size)  # the test can tell
    with pytest.raises(InputError, match="strata"):
        S.rescaled_cluster_weights(5, 10, strata=np.zeros(4))


def test_hierarchical_bootstrap_callable_matches_mean_path():
    table = _design(n_sequences=6, n_seeds=3)
    fast = S.hierarchical_bootstrap(table, n_resamples=50, seed=9, method="percentile")
    slow = S.hierarchical_bootstrap(table, lambda frame: frame["value"].mean(), n_resamples=50, seed=9, method="percentile")
    np.testing.assert_allclose(fast.attrs["draws"]["bootstrap"], slow.attrs["draws"]["bootstrap"], rtol=1e-12)


def test_bca_falls_back_with_a_warning():
    draws = np.linspace(1.0, 2.0, 100)
    with pytest.warns(S.StatsWarning, match="BCa"):
        low, high, used = S.bootstrap_interval(draws, 0.5, jackknife=[0.4, 0.5, 0.6])
    assert used.startswith("percentile")
    assert (low, high) == tuple(np.quantile(draws, [0.025, 0.975]))


def test_effect_sizes_match_their_definitions():
    rng = np.random.default_rng(6)
    x, y = rng.normal(0.5, 1, 25), rng.normal(0, 1, 30)
    pairwise = np.sign(x[:, None] - y[None, :]).mean()
    assert S.cliffs_delta(x, y, n_resamples=500)["effect"].item() == pytest.approx(pairwise)
    a, b = rng.uniform(1, 2, 20), rng.uniform(1, 3, 20)
    ratio = S.error_ratio(a, b, n_resamples=500)
    assert ratio["effect"].item() == pytest.approx(a.mean() / b.mean())
    assert ratio["ci_low"].item() < ratio["effect"].item() < ratio["ci_high"].item()
    d = a - b
    assert S.paired_standardised_difference(a, b, n_resamples=500)["effect"].item() == pytest.approx(d.mean() / d.std(ddof=1))


def test_equivalence_test_decides_by_the_two_one_sided_tests():
    rng = np.random.default_rng(8)
    a = rng.normal(0, 0.1, 50)
    close = S.equivalence_test(a, a + rng.normal(0, 0.01, 50), delta=0.05)
    assert bool(close["equivalent"].item())
    assert -0.05 < close["ci_low"].item() and close["ci_high"].item() < 0.05
    far = S.equivalence_test(a, a + 0.2 + rng.normal(0, 0.01, 50), delta=0.05)
    assert not bool(far["equivalent"].item())
    assert far["p_value"].item() == pytest.approx(max(far["p_value_lower"].item(), far["p_value_upper"].item()))


def test_holm_and_bh_on_a_table():
    p = np.array([0.001, 0.04, 0.03, 0.5, np.nan])
    table = pd.DataFrame({"p_value": p, "family": ["a", "a", "a", "a", "a"]})
    holm = S.adjust_p_values(table)
    order = np.argsort(p[:4])
    expected = np.maximum.accumulate(np.sort(p[:4]) * (4 - np.arange(4)))  # Holm step-down
    np.testing.assert_allclose(holm["p_value_adjusted"].to_numpy()[:4][order], np.minimum(expected, 1))
    assert holm["correction"].iloc[4].startswith("excluded")
    bh = S.adjust_p_values(table, method="bh")
    assert (bh["p_value_adjusted"].to_numpy()[:4] <= holm["p_value_adjusted"].to_numpy()[:4] + 1e-15).all()
    families = S.adjust_p_values(pd.DataFrame({"p_value": [0.01, 0.02], "family": ["a", "b"]}), by=["family"])
    np.testing.assert_allclose(families["p_value_adjusted"], [0.01, 0.02])  # singleton families: unchanged


@pytest.mark.parametrize("call, name", [
    (lambda: S.paired_permutation_test([1.0, np.nan, 2.0], [1.0, 1.0, 1.0]), "a"),
    (lambda: S.paired_permutation_test([1.0, 2.0, 3.0], [1.0, 1.0]), "b"),
    (lambda: S.paired_permutation_test([1.0, 2.0], [1.0, 1.0], n_resamples=0), "n_resamples"),
    (lambda: S.paired_permutation_test([1.0, 2.0], [1.0, 1.0], alternative="bigger"), "alternative"),
    (lambda: S.error_ratio([1.0, -2.0], [1.0, 1.0]), "error_a"),
    (lambda: S.equivalence_test([1.0, 2.0, 3.0], delta=0), "delta"),
    (lambda: S.adjust_p_values(pd.DataFrame({"p_value": [0.1, 1.5]})), "p_value"),
    (lambda: S.adjust_p_values(pd.DataFrame({"p_value": [0.1]}), method="fdr"), "method"),
    (lambda: S.hierarchical_bootstrap(_design(), clusters=["nope"]), "table"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(InputError, match=name):
        call()


def test_constant_differences_are_flagged_not_nan():
    result = S.paired_permutation_test([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    assert result["status"].item() == "zero_variance" and result["reason"].item()
    assert S.paired_standardised_difference([1.0] * 5, [0.0] * 5)["status"].item() == "zero_variance"
