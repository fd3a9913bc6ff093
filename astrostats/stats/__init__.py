"""Pure statistics on arrays and tidy tables: scaling laws, resampling tests, effect sizes, corrections,
calibration.

Knows nothing of circuits, targets or the runner (DESIGN.md: imports point down). Every test returns a tidy
DataFrame with ``statistic, p_value, ci_low, ci_high, effect, n, method`` (+ ``effect_name, status,
reason``) and keeps its raw draws in ``DataFrame.attrs["draws"]``; a scaling-law fit returns a
:class:`ScalingFit` with ``to_frame()``.
"""
from astrostats.stats._common import RESULT_COLUMNS, StatsWarning
from astrostats.stats.calibration import simulate_check, simulate_scaling_table
from astrostats.stats.crossed import crossed_bootstrap, crossed_draws, share_below
from astrostats.stats.effects import cliffs_delta, equivalence_test, error_ratio, paired_standardised_difference
from astrostats.stats.equal_error import equal_error_comparisons, equal_error_tests, required_resource
from astrostats.stats.multitest import adjust_p_values
from astrostats.stats.resampling import (bootstrap_interval, hierarchical_bootstrap, hierarchical_weights,
                                         paired_mean_test, paired_permutation_test, rescaled_cluster_weights, sign_flip_sums,
                                         two_sample_permutation_test)
from astrostats.stats.scaling import fit_scaling_law, scaling_fits_table
from astrostats.stats.scaling_batch import (FitDesign, floor_test_batch, power_law_batch, power_law_bootstrap,
                                            scaling_design)
from astrostats.stats.scaling_result import ScalingFit, epsilon_label

__all__ = ["RESULT_COLUMNS", "StatsWarning", "paired_mean_test", "paired_permutation_test", "two_sample_permutation_test",
           "sign_flip_sums", "hierarchical_weights", "rescaled_cluster_weights", "hierarchical_bootstrap",
           "bootstrap_interval", "error_ratio", "paired_standardised_difference", "cliffs_delta", "equivalence_test",
           "adjust_p_values", "fit_scaling_law", "scaling_fits_table", "ScalingFit", "epsilon_label", "FitDesign",
           "scaling_design", "power_law_batch", "power_law_bootstrap", "floor_test_batch", "simulate_scaling_table",
           "simulate_check", "crossed_bootstrap", "crossed_draws", "share_below", "required_resource",
           "equal_error_comparisons", "equal_error_tests"]
