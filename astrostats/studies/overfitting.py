"""The critique itself: does the circuit's agreement exceed what fitted capacity gives?

Spec -> splits of one head (train / validation / test by whole sequence, plus out-of-distribution: longer N,
another logit scale, another head) -> the runner's circuits and nulls on every split, and the fitted controls
(astrostats.controls) trained on the training split -> paired comparisons with the circuit at matched m,
corrected by family as the spec's [preregistration] table says.

Tables (prefixed by the spec name): ``<name>`` (every measurement: split, circuit, m, seed, sequence_id,
metric, value, scored_against, status), ``_accounting`` (fitted / fixed-random / input-determined counts),
``_training`` (one row per fit: status, epochs, seconds), ``_history`` (per-epoch losses),
``_learning_curves`` (in-sample and held-out error against fitted-parameter count) and ``_tests`` (the
comparisons; family "primary" is the pre-registered test of claim C3).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace

import pandas as pd

from astrostats.controls.accounting import FITTED_CONTROLS, accounting_table
from astrostats.controls.comparisons import Family, comparisons_table
from astrostats.controls.experiment import ControlPlan, run_controls
from astrostats.controls.training import TrainingBudget, split_by_sequence
from astrostats.runner import CIRCUITS, Sweep, run_sweep
from astrostats.spec import Spec
from astrostats.studies.base import RunContext
from astrostats.targets.base import TargetBatch
from astrostats.targets.synthetic import synthetic_head
from astrostats.validation import check_choice, check_float, check_int, fail

LOG = logging.getLogger(__name__)
EVALUATION_SPLITS = ("test", "ood_length", "ood_scale", "ood_head")
PREREGISTRATION_KEYS = ("endpoint", "margin", "alpha", "correction", "primary_controls", "primary_m",
                        "primary_splits", "decision_rule")


@dataclass(frozen=True)
class Parameters:
    m: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    n_seeds: int = 2
    n_train: int = 16
    n_validation: int = 4
    n_test: int = 16
    n_ood: int = 16
    n_tokens: int = 197
    d_head: int = 64
    logit_scale: str | float = "typical"
    ood_n_tokens: int = 394
    ood_logit_scale: str | float = 1.5
    target: str = "synthetic"
    controls: tuple[str, ...] = FITTED_CONTROLS
    capacity_null: bool = True
    circuits: tuple[str, ...] = CIRCUITS
    max_epochs: int = 200
    batch_sequences: int = 8
    learning_rate: float = 0.05
    patience: int = 10
    min_improvement: float = 0.01
    budget_tolerance: float = 0.25
    n_resamples: int = 9999
    memory_mb: int = 512

    def __post_init__(self):
        for name in ("n_train", "n_validation"):
            check_int(name, getattr(self, name), minimum=2)
        for name in ("n_test", "n_ood"):
            check_int(name, getattr(self, name), minimum=2)
        check_choice("target", self.target, ("synthetic",))
        if "astrocyte" not in self.circuits:
            raise fail("circuits", "a list including 'astrocyte' (the circuit every control is compared with)",
                       self.circuits)
        check_float("budget_tolerance", self.budget_tolerance, minimum=0.0)

    @property
    def budget(self) -> TrainingBudget:
        return TrainingBudget(self.max_epochs, self.batch_sequences, self.learning_rate, self.patience,
                              self.min_improvement)


def synthetic_splits(parameters: Parameters, seed: int) -> dict[str, TargetBatch]:
    """Train / validation / test of one synthetic head, and the three out-of-distribution sets."""
    common = dict(d_head=parameters.d_head)
    main = synthetic_head(n_sequences=parameters.n_train + parameters.n_validation + parameters.n_test,
                          n_tokens=parameters.n_tokens, logit_scale=parameters.logit_scale, seed=seed, **common)
    splits = split_by_sequence(main, {"train": parameters.n_train, "validation": parameters.n_validation,
                                      "test": parameters.n_test}, seed)
    splits["ood_length"] = synthetic_head(n_sequences=parameters.n_ood, n_tokens=parameters.ood_n_tokens,
                                          logit_scale=parameters.logit_scale, seed=seed + 1, **common)
    splits["ood_scale"] = synthetic_head(n_sequences=parameters.n_ood, n_tokens=parameters.n_tokens,
                                         logit_scale=parameters.ood_logit_scale, seed=seed + 2, **common)
    splits["ood_head"] = other_head(splits["test"])
    return splits


def other_head(batch: TargetBatch) -> TargetBatch:
    """The same inputs seen by another head: its q and k, the same values (any target with alternative_qk)."""
    if batch.alternative_qk is None:
        raise fail("target", "a head with another head's q and k (alternative_qk) for the ood_head split",
                   batch.labels)
    q, k = batch.alternative_qk
    return replace(batch, q=q, k=k, alternative_qk=(batch.q, batch.k))


def check_preregistration(spec: Spec, parameters: Parameters) -> dict:
    """The [preregistration] table, complete and consistent with the parameters, or an InputError naming why."""
    registered = spec.preregistration
    absent = [key for key in PREREGISTRATION_KEYS if key not in registered]
    if absent:
        raise fail(f"{spec.name}.preregistration", f"keys {list(PREREGISTRATION_KEYS)}", f"missing {absent}")
    check_float("preregistration.margin", registered["margin"], minimum=0.0)
    check_float("preregistration.alpha", registered["alpha"], minimum=0.0, strict=True, maximum=1.0)
    check_choice("preregistration.correction", registered["correction"], ("holm", "bonferroni"))
    names = set(parameters.circuits) | set(parameters.controls)
    if parameters.capacity_null:
        names |= {f"{c}_shuffled" for c in parameters.controls}
    for control in registered["primary_controls"]:
        check_choice("preregistration.primary_controls", control, sorted(names - {"astrocyte"}))
    for split in registered["primary_splits"]:
        check_choice("preregistration.primary_splits", split, EVALUATION_SPLITS)
    if registered["primary_m"] != "largest":
        raise fail("preregistration.primary_m", "'largest' (the largest m of the run)", registered["primary_m"])
    return registered


def families(parameters: Parameters, registered: dict) -> list[Family]:
    """Primary (pre-registered, decides C3), the same nulls at every other m, baselines, and efficiency."""
    largest = max(parameters.m)
    others = tuple(m for m in parameters.m if m != largest)
    primary = tuple(registered["primary_controls"])
    margin = float(registered["margin"])
    baselines = tuple(c for c in ("uniform", "elu_linear", "no_astrocyte") if c in parameters.circuits)
    result = [Family("primary", primary, (largest,), tuple(registered["primary_splits"]), margin, "greater")]
    if others:
        result.append(Family("nulls_other_m", primary, others, EVALUATION_SPLITS, margin, "greater"))
    if baselines:
        result.append(Family("baselines", baselines, tuple(parameters.m), EVALUATION_SPLITS, 0.0, "greater"))
    result.append(Family("efficiency", tuple(parameters.controls), tuple(parameters.m), EVALUATION_SPLITS, 0.0,
                         "two-sided"))
    return result


def circuit_measurements(splits: dict[str, TargetBatch], parameters: Parameters, seed: int, context: RunContext
                         ) -> pd.DataFrame:
    """The runner's circuits and nulls on every split (the circuit is scored on training sequences too:
    it never saw them, so its in-sample and held-out errors agree by construction)."""
    sweep = Sweep(m=parameters.m, n_seeds=parameters.n_seeds, circuits=parameters.circuits, base_seed=seed,
                  memory_mb=parameters.memory_mb)
    frames = []
    for name, batch in splits.items():
        table = run_sweep([batch], sweep, progress=False, executor=context.executor)
        table.insert(table.columns.get_loc("circuit"), "split", name)
        frames.append(table.assign(scored_against="true", status="ok"))
    return pd.concat(frames, ignore_index=True)


def learning_curves(measurements: pd.DataFrame, accounting: pd.DataFrame) -> pd.DataFrame:
    """Mean in-sample (train) and held-out (test) error against fitted-parameter count, circuit included."""
    rows = measurements[(measurements["metric"] == "relative_error") & measurements["split"].isin(["train", "test"])
                        & measurements["m"].notna()]
    rows = rows[rows["circuit"].isin(["astrocyte", *accounting.loc[accounting["n_fitted"] > 0, "circuit"]])]
    curves = (rows.groupby(["circuit", "m", "split", "scored_against"], as_index=False)["value"]
              .agg(error="mean", error_sd="std", n="count"))
    counts = accounting[["circuit", "m", "n_fitted", "n_fixed_random", "n_input_determined"]]
    curves = curves.merge(counts, on=["circuit", "m"], how="left")
    wide = curves.pivot_table(index=["circuit", "m", "scored_against"], columns="split", values="error")
    if {"train", "test"} <= set(wide.columns):
        gap = (wide["test"] - wide["train"]).rename("generalisation_gap").reset_index()
        curves = curves.merge(gap, on=["circuit", "m", "scored_against"], how="left")
    return curves


def run(spec: Spec, context: RunContext) -> dict[str, pd.DataFrame]:
    parameters = spec.bind(Parameters)
    registered = check_preregistration(spec, parameters)
    plan = ControlPlan(m=parameters.m, n_seeds=parameters.n_seeds, controls=parameters.controls,
                       capacity_null=parameters.capacity_null, budget=parameters.budget,
                       budget_tolerance=parameters.budget_tolerance, base_seed=spec.seed)
    accounting = accounting_table(tuple(parameters.circuits) + plan.names, parameters.m, parameters.d_head,
                                  parameters.d_head, parameters.budget_tolerance)  # fails early if unmatched
    splits = synthetic_splits(parameters, spec.seed)
    circuits = circuit_measurements(splits, parameters, spec.seed, context)
    controls, training, history = run_controls(splits, plan, progress=context.progress)
    measurements = pd.concat([circuits, controls], ignore_index=True)
    measurements["m"] = measurements["m"].astype("Int64")
    measurements["seed"] = measurements["seed"].astype("Int64")
    measurements.insert(0, "analysis", spec.name)
    tests = comparisons_table(measurements, families(parameters, registered), alpha=float(registered["alpha"]),
                              correction=registered["correction"], n_resamples=parameters.n_resamples,
                              seed=spec.seed)
    tests.insert(0, "analysis", spec.name)
    tests["spec_sha256"] = spec.sha256
    tests["preregistration_sha256"] = _preregistration_hash(registered)
    return {spec.name: measurements, f"{spec.name}_accounting": accounting, f"{spec.name}_training": training,
            f"{spec.name}_history": history, f"{spec.name}_learning_curves": learning_curves(measurements, accounting),
            f"{spec.name}_tests": tests}


def _preregistration_hash(registered: dict) -> str:
    return hashlib.sha256(json.dumps(registered, sort_keys=True, default=str).encode()).hexdigest()


__all__ = ["Parameters", "run", "synthetic_splits", "other_head", "families", "check_preregistration",
           "learning_curves"]
