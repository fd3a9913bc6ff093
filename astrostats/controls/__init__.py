"""The overfitting controls: parameter accounting, fitted models with the circuit's budget, capacity nulls,
and the paired comparisons with the circuit (the critique's question, asked with numbers)."""
from astrostats.controls.accounting import (CAPACITY_NULLS, FITTED_CONTROLS, accounting_table,
                                            mlp_size_for_budget)
from astrostats.controls.closed_form import RandomFeatureRidge
from astrostats.controls.experiment import ControlPlan, run_controls
from astrostats.controls.fitted import FittedRegressor, LearnedFeatureAttention
from astrostats.controls.training import FitResult, TrainingBudget, fit, predict, split_by_sequence

__all__ = ["CAPACITY_NULLS", "FITTED_CONTROLS", "accounting_table", "mlp_size_for_budget", "ControlPlan",
           "run_controls", "RandomFeatureRidge", "FittedRegressor", "LearnedFeatureAttention", "FitResult", "TrainingBudget", "fit",
           "predict", "split_by_sequence"]
