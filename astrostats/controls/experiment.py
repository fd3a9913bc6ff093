"""Fit every control at every m and seed on the training split, and score it on every evaluation split.

Generic over targets: ``splits`` maps split names to :class:`TargetBatch` (a source of q, k, v and exact
outputs), so synthetic heads and real Transformer heads take the same path. Needs "train" and "validation";
every other split is scored. Seeds pair the controls with the circuit: the learned-feature control of seed s
at width m starts from the runner's projection for (m, s), i.e. from the very circuit it is compared with.

The capacity null trains the same controls on shuffled targets (each training or validation sequence paired
with another sequence's outputs, a derangement), for the full budget of epochs (early stopping on shuffled
validation targets would hand back the untrained start, which for the learned-feature form is the circuit
itself). Its in-sample error is scored against the shuffled targets it
fitted (``scored_against = "shuffled"``): what capacity alone can memorise; everywhere else against the truth.

Amendment v2 (``v2_nulls``) adds nulls whose training state cannot decide: ``ridge_shuffled``, the
closed-form least-squares optimum on fixed random features (astrostats.controls.closed_form), and
``learned_feature_v2_shuffled`` / ``fitted_mlp_v2_shuffled``, started from weights independent of the
circuit's W, early-stopped on the (shuffled) validation error, each with the learning rate of
``null_learning_rates`` that reaches the least validation loss; a fit whose best epoch is 0 is flagged
``failed_to_learn`` only after the refit ladder (astrostats.controls.refit: longer, another initialisation,
another optimiser) failed too; every attempt is a row of the refit table. The v2 nulls get every feature draw (``n_seeds``); the original controls get the first
``control_seeds``. ``constant`` rows (the training-mean output, the best constant predictor) are scored on
every split so that a null worse than it can be replaced by it (astrostats.controls.comparisons).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch
from tqdm.auto import tqdm

from astrostats.controls.accounting import CAPACITY_NULLS, FITTED_CONTROLS
from astrostats.controls.closed_form import RandomFeatureRidge, constant_output, feature_count, seed_of
from astrostats.controls.fitted import FittedRegressor, LearnedFeatureAttention
from astrostats.controls.refit import RefitLadder, refit_until_learned
from astrostats.controls.training import (FitResult, TrainingBudget, derangement, exact_outputs, fit, predict,
                                          relative_errors)
from astrostats.runner import Sweep, draw_projections
from astrostats.seeding import derived_seed, torch_generator
from astrostats.targets.base import TargetBatch, labelled
from astrostats.validation import check_choice, check_float, check_int, fail

LOG = logging.getLogger(__name__)
HEAD_KEYS = ("target", "layer", "head")  # the training split's labels that name the head in training/history
REFIT_COLUMNS = ("circuit", "m", "seed", "attempt", "step", "optimiser", "learning_rate", "max_epochs", "patience",
                 "init_seed", "epochs", "best_epoch", "status", "train_loss", "heldout_loss", "start_heldout_loss",
                 "constant_heldout_loss", "learned", "used", "attempts", "seconds")


@dataclass(frozen=True)
class ControlPlan:
    """Which controls, at which m, with how many seeds, under which training budget."""

    m: tuple[int, ...]
    n_seeds: int
    controls: tuple[str, ...] = FITTED_CONTROLS
    capacity_null: bool = True
    budget: TrainingBudget = TrainingBudget()
    budget_tolerance: float = 0.25
    base_seed: int = 0
    v2_nulls: bool = False
    null_learning_rates: tuple[float, ...] = (0.01, 0.05)
    control_seeds: int | None = None  # seeds of the original controls (None: n_seeds)
    refit: RefitLadder = RefitLadder()  # how a v2 fitted null that failed to learn is refit

    def __post_init__(self):
        if not self.m:
            raise fail("m", "a non-empty list of positive integers", self.m)
        for value in self.m:
            check_int("m", value, minimum=1)
        check_int("n_seeds", self.n_seeds, minimum=1)
        for control in self.controls:
            check_choice("controls", control, FITTED_CONTROLS)
        check_float("budget_tolerance", self.budget_tolerance, minimum=0.0)
        if self.control_seeds is not None:
            check_int("control_seeds", self.control_seeds, minimum=1)
            if self.control_seeds > self.n_seeds:
                raise fail("control_seeds", f"at most n_seeds={self.n_seeds}", self.control_seeds)
        if self.v2_nulls and not self.null_learning_rates:
            raise fail("null_learning_rates", "at least one learning rate for the v2 fitted nulls",
                       self.null_learning_rates)
        for rate in self.null_learning_rates:
            check_float("null_learning_rates", rate, minimum=0.0, strict=True)

    @property
    def names(self) -> tuple[str, ...]:
        nulls = tuple(f"{c}_shuffled" for c in self.controls) if self.capacity_null else ()
        return self.controls + nulls + self.v2_names

    @property
    def v2_names(self) -> tuple[str, ...]:
        if not self.v2_nulls:
            return ()
        return ("ridge_shuffled",) + tuple(f"{c}_v2_shuffled" for c in self.controls)

    def seeds_of(self, control: str) -> int:
        """How many seeds a control is fitted with: every feature draw for the v2 nulls."""
        if control in self.v2_names or self.control_seeds is None:
            return self.n_seeds
        return self.control_seeds


def build_control(control: str, m: int, seed: int, d: int, d_v: int, plan: ControlPlan,
                  init_seed: int | None = None) -> torch.nn.Module:
    """A fresh, untrained control matched to the circuit of width m and seed ``seed`` (a v2 null: from
    ``init_seed``, default its own seed stream's :func:`v2_init_seed`)."""
    base = control.removesuffix("_shuffled")
    if base.endswith("_v2"):  # independent of the circuit's W: the null's own seed stream
        init_seed = v2_init_seed(plan, m, seed) if init_seed is None else init_seed
        if base == "learned_feature_v2":
            return LearnedFeatureAttention(torch.randn(m, d, generator=torch_generator(init_seed)))
        return FittedRegressor.for_budget(m, d, d_v, init_seed, plan.budget_tolerance)
    if base == "ridge":
        return RandomFeatureRidge(d, d_v, feature_count(m, d, d_v), seed_of(plan.base_seed, m, seed))
    if base == "learned_feature":
        sweep = Sweep(m=(m,), n_seeds=seed + 1, base_seed=plan.base_seed)
        return LearnedFeatureAttention(draw_projections(sweep, "positive", m, range(seed, seed + 1), d)[0])
    init_seed = derived_seed(plan.base_seed, m, seed)
    return FittedRegressor.for_budget(m, d, d_v, init_seed, plan.budget_tolerance)


def v2_init_seed(plan: ControlPlan, m: int, seed: int) -> int:
    return seed_of(plan.base_seed, m, seed)


def _score_rows(labels: dict, split: str, control: str, m: int, seed: int, status: str, scored_against: str,
                sequence_ids, errors: torch.Tensor) -> pd.DataFrame:
    frame = pd.DataFrame({"split": split, "circuit": control, "feature_map": "fitted", "m": m, "seed": seed,
                          "sequence_id": list(sequence_ids), "metric": "relative_error",
                          "value": errors.double().numpy(), "scored_against": scored_against, "status": status})
    for key, value in reversed(labels.items()):
        frame.insert(0, key, value)
    return frame


def solve_ridge(model: RandomFeatureRidge, train: TargetBatch, validation: TargetBatch,
                train_targets: torch.Tensor, validation_targets: torch.Tensor) -> FitResult:
    """The closed-form null: converged by definition (nothing is iterated)."""
    started = time.perf_counter()
    model.solve(train, train_targets, validation, validation_targets)
    history = pd.DataFrame({"epoch": [0], "train_loss": [model.loss(train, train_targets)],
                            "validation_loss": [model.loss(validation, validation_targets)]})
    return FitResult(model, "converged", 0, 0, time.perf_counter() - started, history,
                     f"closed form; ridge {model.ridge:g} x mean squared singular value, chosen on validation")


def fit_v2_null(model: torch.nn.Module, control: str, m: int, seed: int, d: int, d_v: int, train: TargetBatch,
                validation: TargetBatch, targets: tuple, plan: ControlPlan) -> tuple[FitResult, list[dict]]:
    """Early-stopped fits at every learning rate of the plan (each from the same independent start); the one
    with the least validation loss is the first attempt. One that has not learned (astrostats.controls.refit) is
    refit up the plan's ladder; if no attempt learns it is ``failed_to_learn``: its error says nothing about what
    capacity can learn. (result used, one row per attempt)."""
    best, best_rate = None, None
    for rate in plan.null_learning_rates:
        candidate = build_control(control, m, seed, d, d_v, plan) if best is not None else model
        budget = dataclasses.replace(plan.budget, learning_rate=rate)
        result = fit(candidate, train, validation, budget, seed=plan.base_seed + seed, train_targets=targets[0],
                     validation_targets=targets[1], early_stopping=True)
        loss = float(result.history["validation_loss"].iloc[result.best_epoch])
        if best is None or loss < float(best.history["validation_loss"].iloc[best.best_epoch]):
            best, best_rate = result, rate
    best = dataclasses.replace(best, learning_rate=best_rate)
    budget = dataclasses.replace(plan.budget, learning_rate=best_rate)
    return refit_until_learned(best, lambda start: build_control(control, m, seed, d, d_v, plan, init_seed=start),
                               v2_init_seed(plan, m, seed), train, validation, targets, budget,
                               plan.base_seed + seed, plan.refit)


class ControlTables(NamedTuple):
    """What :func:`run_controls` returns: every score, every fit, every epoch, every refit attempt."""

    measurements: pd.DataFrame
    training: pd.DataFrame
    history: pd.DataFrame
    refits: pd.DataFrame


def run_controls(splits: dict[str, TargetBatch], plan: ControlPlan, *, progress: bool = True) -> ControlTables:
    """(measurements, training, history, refits) for every control, m and seed.

    measurements: tidy rows (target labels, split, circuit, m, seed, sequence_id, metric, value,
    scored_against, status); training: one row per fit (n_fitted, status, epochs, seconds, reason);
    history: per-epoch train and validation loss of every fit (of the attempt used); refits: one row per attempt
    of every v2 fitted null (astrostats.controls.refit). Training, history and refit rows start with the
    training split's target, layer and head, so fits of several heads can share one table.
    """
    for name in ("train", "validation"):
        if name not in splits:
            raise fail("splits", "a mapping with 'train' and 'validation' splits", sorted(splits))
    train, validation = splits["train"], splits["validation"]
    if train.n_sequences < 2 or validation.n_sequences < 2:
        raise fail("splits", "at least 2 training and 2 validation sequences (the capacity null shuffles them)",
                   (train.n_sequences, validation.n_sequences))
    d, d_v = train.q.shape[-1], train.v.shape[-1]
    exact = {name: exact_outputs(batch) for name, batch in splits.items()}
    shuffled = {name: exact[name][torch.as_tensor(derangement(splits[name].n_sequences, plan.base_seed + i))]
                for i, name in enumerate(("train", "validation"))}
    tasks = [(c, m, s) for m in plan.m for c in plan.names for s in range(plan.seeds_of(c))]
    measurements, training, histories, refits = [], [], [], []
    if plan.v2_nulls:
        constant = constant_output(exact["train"])
        for name, batch in splits.items():
            estimate = constant.expand_as(exact[name]).float()
            measurements.append(_score_rows(batch.labels, name, "constant", pd.NA, pd.NA, "converged", "true",
                                            batch.sequence_ids, relative_errors(estimate, exact[name])))
    for control, m, seed in tqdm(tasks, disable=not progress, desc="fitted controls", unit="fit"):
        model = build_control(control, m, seed, d, d_v, plan)
        is_null = control in CAPACITY_NULLS or control in plan.v2_names
        targets = (shuffled["train"], shuffled["validation"]) if is_null else (None, None)
        attempts = [{"attempts": 1}]
        if control == "ridge_shuffled":
            result = solve_ridge(model, train, validation, *targets)
        elif control in plan.v2_names:
            result, attempts = fit_v2_null(model, control, m, seed, d, d_v, train, validation, targets, plan)
            refits += [{"circuit": control, "m": m, "seed": seed, **row} for row in attempts]
        else:
            result = fit(model, train, validation, plan.budget, seed=plan.base_seed + seed,
                         train_targets=targets[0], validation_targets=targets[1], early_stopping=not is_null)
        training.append({"circuit": control, "m": m, "seed": seed, "n_fitted": model.n_fitted,
                         "budget": m * d, "status": result.status, "best_epoch": result.best_epoch,
                         "epochs": result.epochs, "seconds": result.seconds,
                         "train_loss": float(result.history["train_loss"].iloc[result.best_epoch]),
                         "validation_loss": float(result.history["validation_loss"].iloc[result.best_epoch]),
                         "trained_on": "shuffled" if is_null else "true", "reason": result.reason,
                         "learning_rate": result.learning_rate or plan.budget.learning_rate,
                         "attempts": attempts[0]["attempts"]})
        histories.append(result.history.assign(circuit=control, m=m, seed=seed))
        for name, batch in splits.items():
            estimate = predict(result.model, batch, plan.budget.batch_sequences)
            measurements.append(_score_rows(batch.labels, name, control, m, seed, result.status, "true",
                                            batch.sequence_ids, relative_errors(estimate, exact[name])))
            if is_null and name in shuffled:
                measurements.append(_score_rows(batch.labels, name, control, m, seed, result.status, "shuffled",
                                                batch.sequence_ids, relative_errors(estimate, shuffled[name])))
    history = pd.concat(histories, ignore_index=True)[["circuit", "m", "seed", "epoch", "train_loss",
                                                         "validation_loss"]]
    head = {key: train.labels[key] for key in HEAD_KEYS if key in train.labels}  # which head was fitted
    refit_table = pd.DataFrame(refits, columns=REFIT_COLUMNS)
    return ControlTables(pd.concat(measurements, ignore_index=True), labelled(pd.DataFrame(training), head),
                         labelled(history, head), labelled(refit_table, head))
