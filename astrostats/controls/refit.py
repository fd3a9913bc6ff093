"""The refit ladder: a fitted null that fails to learn is refit, not dropped.

A fit has *learned* when its kept state's held-out (validation) loss improved on its own start by at least the
budget's ``min_improvement`` (its best epoch is after epoch 0), or is no worse than the best constant
predictor's held-out loss (the training-mean output: on shuffled targets nothing generalises beyond it, so
reaching it is all there is to learn). A fit that has not learned says nothing about what the null's capacity
can do, so it is refit, in this order, until an attempt learns or ``attempts`` refits are spent:

1. ``first``: the fit as planned (Adam, the learning rate chosen on validation);
2. ``longer``: the same optimiser and learning rate from the same start, with ``factor`` times the epochs and
   the patience (at most ``max_epochs``);
3. ``reseeded``: as ``longer``, from another initialisation;
4. ``lbfgs``: another optimiser, L-BFGS with a line search (no learning rate to get wrong), from the first start,
   with the epochs and the patience of ``longer`` divided by ``LBFGS_ITERATIONS`` (an L-BFGS step makes that many
   passes over the training set, so this rung costs about as many passes as ``longer``).

The first attempt that learns is used; if none does, the first attempt is kept, flagged ``failed_to_learn``
with the number of refits in its reason: reported as a limitation, deciding nothing. Every attempt is one row of
the refit table (attempt, step, optimiser, epochs, init seed, train and held-out loss, learned, used).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from astrostats.controls.training import LBFGS_ITERATIONS, FitResult, TrainingBudget, fit, relative_errors
from astrostats.seeding import derived_seed, name_code
from astrostats.targets.base import TargetBatch
from astrostats.validation import check_int

STEPS = ("first", "longer", "reseeded", "lbfgs")


@dataclass(frozen=True)
class RefitLadder:
    """How far a fit that failed to learn is pursued: ``attempts`` refits (0: none) of ``factor`` times the
    first budget's epochs and patience, at most ``max_epochs`` epochs each."""

    attempts: int = 3
    factor: int = 4
    max_epochs: int = 600

    def __post_init__(self):
        check_int("refit_attempts", self.attempts, minimum=0, maximum=len(STEPS) - 1)
        check_int("refit_factor", self.factor, minimum=1)
        check_int("refit_max_epochs", self.max_epochs, minimum=1)

    def longer(self, budget: TrainingBudget) -> TrainingBudget:
        """The refits' budget: factor x the epochs and the patience, epochs capped at max_epochs."""
        return dataclasses.replace(budget, max_epochs=min(self.max_epochs, budget.max_epochs * self.factor),
                                   patience=budget.patience * self.factor)

    def lbfgs(self, budget: TrainingBudget) -> TrainingBudget:
        """The L-BFGS rung's budget: about as many passes over the training set as the ``longer`` rung."""
        longer = self.longer(budget)
        return dataclasses.replace(longer, max_epochs=max(1, longer.max_epochs // LBFGS_ITERATIONS),
                                   patience=max(2, longer.patience // LBFGS_ITERATIONS))


def constant_loss(train_targets: torch.Tensor, validation_targets: torch.Tensor) -> float:
    """The held-out loss (mean squared relative error) of the best constant predictor, the training-mean output."""
    constant = train_targets.double().mean(dim=(0, 1)).float()
    return float(relative_errors(constant.expand_as(validation_targets), validation_targets).square().mean())


def kept_losses(result: FitResult) -> tuple[float, float]:
    """(train, held-out) loss of the state a fit kept."""
    row = result.history.iloc[result.best_epoch]
    return float(row["train_loss"]), float(row["validation_loss"])


def has_learned(result: FitResult, floor: float) -> bool:
    """Improved on its start on held-out data, or no worse there than the best constant predictor (``floor``)."""
    held_out = kept_losses(result)[1]
    return result.best_epoch > 0 or (math.isfinite(held_out) and held_out <= floor)


def attempt_row(attempt: int, step: str, optimiser: str, budget: TrainingBudget, init_seed: int,
                result: FitResult, floor: float) -> dict:
    train_loss, held_out = kept_losses(result)
    return {"attempt": attempt, "step": step, "optimiser": optimiser,
            "learning_rate": budget.learning_rate if optimiser == "adam" else math.nan,
            "max_epochs": budget.max_epochs, "patience": budget.patience, "init_seed": init_seed,
            "epochs": result.epochs, "best_epoch": result.best_epoch, "status": result.status,
            "train_loss": train_loss, "heldout_loss": held_out,
            "start_heldout_loss": float(result.history["validation_loss"].iloc[0]), "constant_heldout_loss": floor,
            "learned": has_learned(result, floor), "used": False, "seconds": result.seconds}


def refit_until_learned(first: FitResult, build: Callable[[int], nn.Module], init_seed: int, train: TargetBatch,
                        validation: TargetBatch, targets: tuple, budget: TrainingBudget, seed: int,
                        ladder: RefitLadder) -> tuple[FitResult, list[dict]]:
    """(the fit used, one row per attempt). ``first`` is the planned fit (under ``budget``) from
    ``build(init_seed)``; ``targets`` the (train, validation) targets every attempt fits."""
    floor = constant_loss(*targets)
    rows = [attempt_row(1, STEPS[0], "adam", budget, init_seed, first, floor)]
    used, longer = None, ladder.longer(budget)
    if rows[0]["learned"]:
        used = first
    reseeded = derived_seed(init_seed, name_code("refit"))
    plans = {"longer": ("adam", init_seed), "reseeded": ("adam", reseeded), "lbfgs": ("lbfgs", init_seed)}
    for attempt, step in enumerate(STEPS[1:1 + ladder.attempts], start=2):
        if used is not None:
            break
        optimiser, start = plans[step]
        rung = longer if optimiser == "adam" else ladder.lbfgs(budget)
        result = fit(build(start), train, validation, rung, seed=seed, train_targets=targets[0],
                     validation_targets=targets[1], early_stopping=True, optimiser=optimiser)
        rows.append(attempt_row(attempt, step, optimiser, rung, start, result, floor))
        if rows[-1]["learned"]:
            used = dataclasses.replace(result, learning_rate=longer.learning_rate if optimiser == "adam" else math.nan,
                                       reason=f"learned on refit {attempt - 1} ({step}, {optimiser}) after "
                                              f"{attempt - 1} failed attempt(s); {result.reason}")
    if used is None:
        refits = len(rows) - 1
        used = dataclasses.replace(first, status="failed_to_learn",
                                   reason=f"failed to learn after {refits} refit(s): held-out loss never improved on "
                                          "its start nor reached the best constant predictor's")
        rows[0]["used"] = True
    else:
        rows[-1]["used"] = True
    for row in rows:
        row["attempts"] = len(rows)
    return used, rows


__all__ = ["RefitLadder", "STEPS", "constant_loss", "has_learned", "refit_until_learned"]
