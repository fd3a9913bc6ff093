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
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from astrostats.controls.accounting import CAPACITY_NULLS, FITTED_CONTROLS
from astrostats.controls.fitted import FittedRegressor, LearnedFeatureAttention
from astrostats.controls.training import (TrainingBudget, derangement, exact_outputs, fit, predict,
                                          relative_errors)
from astrostats.runner import Sweep, draw_projections
from astrostats.targets.base import TargetBatch, labelled
from astrostats.validation import check_choice, check_float, check_int, fail
from astrostats.seeding import derived_seed

LOG = logging.getLogger(__name__)
HEAD_KEYS = ("target", "layer", "head")  # the training split's labels that name the head in training/history


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

    def __post_init__(self):
        if not self.m:
            raise fail("m", "a non-empty list of positive integers", self.m)
        for value in self.m:
            check_int("m", value, minimum=1)
        check_int("n_seeds", self.n_seeds, minimum=1)
        for control in self.controls:
            check_choice("controls", control, FITTED_CONTROLS)
        check_float("budget_tolerance", self.budget_tolerance, minimum=0.0)

    @property
    def names(self) -> tuple[str, ...]:
        nulls = tuple(f"{c}_shuffled" for c in self.controls) if self.capacity_null else ()
        return self.controls + nulls


def build_control(control: str, m: int, seed: int, d: int, d_v: int, plan: ControlPlan) -> torch.nn.Module:
    """A fresh, untrained control matched to the circuit of width m and seed ``seed``."""
    base = control.removesuffix("_shuffled")
    if base == "learned_feature":
        sweep = Sweep(m=(m,), n_seeds=seed + 1, base_seed=plan.base_seed)
        return LearnedFeatureAttention(draw_projections(sweep, "positive", m, range(seed, seed + 1), d)[0])
    init_seed = derived_seed(plan.base_seed, m, seed)
    return FittedRegressor.for_budget(m, d, d_v, init_seed, plan.budget_tolerance)


def _score_rows(labels: dict, split: str, control: str, m: int, seed: int, status: str, scored_against: str,
                sequence_ids, errors: torch.Tensor) -> pd.DataFrame:
    frame = pd.DataFrame({"split": split, "circuit": control, "feature_map": "fitted", "m": m, "seed": seed,
                          "sequence_id": list(sequence_ids), "metric": "relative_error",
                          "value": errors.double().numpy(), "scored_against": scored_against, "status": status})
    for key, value in reversed(labels.items()):
        frame.insert(0, key, value)
    return frame


def run_controls(splits: dict[str, TargetBatch], plan: ControlPlan, *, progress: bool = True
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(measurements, training, history) for every control, m and seed.

    measurements: tidy rows (target labels, split, circuit, m, seed, sequence_id, metric, value,
    scored_against, status); training: one row per fit (n_fitted, status, epochs, seconds, reason);
    history: per-epoch train and validation loss of every fit. Training and history rows start with the
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
    tasks = [(c, m, s) for m in plan.m for c in plan.names for s in range(plan.n_seeds)]
    measurements, training, histories = [], [], []
    for control, m, seed in tqdm(tasks, disable=not progress, desc="fitted controls", unit="fit"):
        model = build_control(control, m, seed, d, d_v, plan)
        is_null = control in CAPACITY_NULLS
        targets = (shuffled["train"], shuffled["validation"]) if is_null else (None, None)
        result = fit(model, train, validation, plan.budget, seed=plan.base_seed + seed, train_targets=targets[0],
                     validation_targets=targets[1], early_stopping=not is_null)
        training.append({"circuit": control, "m": m, "seed": seed, "n_fitted": model.n_fitted,
                         "budget": m * d, "status": result.status, "best_epoch": result.best_epoch,
                         "epochs": result.epochs, "seconds": result.seconds,
                         "train_loss": float(result.history["train_loss"].iloc[result.best_epoch]),
                         "validation_loss": float(result.history["validation_loss"].iloc[result.best_epoch]),
                         "trained_on": "shuffled" if is_null else "true", "reason": result.reason})
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
    return (pd.concat(measurements, ignore_index=True), labelled(pd.DataFrame(training), head),
            labelled(history, head))
