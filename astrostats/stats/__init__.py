"""Pure statistics on arrays and tidy tables: scaling laws, resampling tests, effect sizes, corrections.

Knows nothing of circuits, targets or the runner (DESIGN.md: imports point down). Every test returns a tidy
DataFrame with ``statistic, p_value, ci_low, ci_high, effect, n, method`` (+ ``effect_name, status,
reason``) and keeps its raw draws in ``DataFrame.attrs["draws"]``.
"""
from astrostats.stats._common import RESULT_COLUMNS, StatsWarning
from astrostats.stats.effects import cliffs_delta, equivalence_test, error_ratio, paired_standardised_difference
from astrostats.stats.multitest import adjust_p_values
from astrostats.stats.resampling import (bootstrap_interval, hierarchical_bootstrap, hierarchical_weights,
                                         paired_permutation_test, rescaled_cluster_weights, sign_flip_sums,
                                         two_sample_permutation_test)

__all__ = ["RESULT_COLUMNS", "StatsWarning", "paired_permutation_test", "two_sample_permutation_test",
           "sign_flip_sums", "hierarchical_weights", "rescaled_cluster_weights", "hierarchical_bootstrap", "bootstrap_interval",
           "error_ratio", "paired_standardised_difference", "cliffs_delta", "equivalence_test", "adjust_p_values"]
