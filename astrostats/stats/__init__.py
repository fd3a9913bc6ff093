"""Pure statistics on arrays and tidy tables: scaling laws, resampling tests, effect sizes, corrections,
calibration.

Knows nothing of circuits, targets or the runner (DESIGN.md: imports point down). Every test returns a tidy
DataFrame with ``statistic, p_value, ci_low, ci_high, effect, n, method`` (+ ``effect_name, status,
reason``) and keeps its raw draws in ``DataFrame.attrs["draws"]``; a scaling-law fit returns a
:class:`ScalingFit` with ``to_frame()``.
"""
import importlib

#: name -> the submodule that defines it. Submodules load on first use (PEP 562), so that the audit, which needs a
#: correction and a few tests, does not pay for statsmodels' regression API and the calibration study (2 s).
_SOURCES = {
    "_common": ("RESULT_COLUMNS", "StatsWarning"),
    "calibration": ("simulate_check", "simulate_scaling_table"),
    "crossed": ("crossed_bootstrap", "crossed_draws", "share_below"),
    "effects": ("cliffs_delta", "equivalence_test", "error_ratio", "paired_standardised_difference"),
    "equal_error": ("equal_error_comparisons", "equal_error_tests", "required_resource"),
    "multitest": ("adjust_p_values",),
    "resampling": ("bootstrap_interval", "hierarchical_bootstrap", "hierarchical_weights", "paired_mean_test",
                   "paired_permutation_test", "rescaled_cluster_weights", "sign_flip_sums",
                   "two_sample_permutation_test"),
    "scaling": ("fit_scaling_law", "log_spread_trend", "rms_rate", "scaling_fits_table"),
    "scaling_batch": ("FitDesign", "floor_test_batch", "power_law_batch", "power_law_bootstrap", "scaling_design"),
    "scaling_result": ("ScalingFit", "epsilon_label"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))

__all__ = ["RESULT_COLUMNS", "StatsWarning", "paired_mean_test", "paired_permutation_test", "two_sample_permutation_test",
           "sign_flip_sums", "hierarchical_weights", "rescaled_cluster_weights", "hierarchical_bootstrap",
           "bootstrap_interval", "error_ratio", "paired_standardised_difference", "cliffs_delta", "equivalence_test",
           "adjust_p_values", "fit_scaling_law", "log_spread_trend", "rms_rate", "scaling_fits_table", "ScalingFit",
           "epsilon_label", "FitDesign", "scaling_design", "power_law_batch", "power_law_bootstrap", "floor_test_batch", "simulate_scaling_table",
           "simulate_check", "crossed_bootstrap", "crossed_draws", "share_below", "required_resource",
           "equal_error_comparisons", "equal_error_tests"]
