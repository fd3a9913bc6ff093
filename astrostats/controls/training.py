"""Training the fitted controls under a fixed, stated budget, and the splits they are judged on.

Splits are by whole sequence (a sequence's tokens never straddle train and test). Training minimises the
mean squared relative error |Y_hat - Y|_F^2 / |Y|_F^2 over sequences (the endpoint, squared) with Adam on
mini-batches of whole sequences, for at most ``max_epochs``; after every epoch the validation loss is
measured and training stops once it has not improved by ``min_improvement`` (relative) for ``patience``
epochs; the best validation state is kept. A fit that reaches ``max_epochs`` still improving is flagged
``not_converged``; a non-finite loss is ``diverged``. Neither is ever dropped: the flag travels with the rows.

The optimiser is Adam; a refit (astrostats.controls.refit) may ask for L-BFGS instead: one step per epoch over
all training sequences at once, with a strong-Wolfe line search (no learning rate to get wrong), at most
``LBFGS_ITERATIONS`` iterations per step.

Without early stopping (the capacity null: its validation targets are shuffled too, so early stopping would
always hand back the untrained start) the whole budget of ``max_epochs`` is used and the final state kept;
it counts as converged when the mean training loss of the last ``patience`` epochs improved on the mean of
the ``patience`` epochs before by less than ``min_improvement`` (relative), i.e. when the fit to what it was
given has levelled off (window means, so epoch-to-epoch SGD noise does not decide).
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from astrostats.circuits.attention import softmax_attention
from astrostats.targets.base import TargetBatch
from astrostats.validation import InputError, all_finite, check_choice, check_float, check_int, fail

LOG = logging.getLogger(__name__)
OPTIMISERS = ("adam", "lbfgs")
LBFGS_ITERATIONS = 5  # per epoch: each iteration is a pass over the training set plus line-search passes, so an
# L-BFGS epoch costs about 5-10 Adam epochs; 5 keeps a refit by L-BFGS within a few of the first fit's cost


@dataclass(frozen=True)
class TrainingBudget:
    """The fixed budget every fitted control gets (stated in the spec and in the tables)."""

    max_epochs: int = 200
    batch_sequences: int = 8
    learning_rate: float = 0.01
    patience: int = 20
    min_improvement: float = 0.001

    def __post_init__(self):
        check_int("max_epochs", self.max_epochs, minimum=1)
        check_int("batch_sequences", self.batch_sequences, minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0, strict=True)
        check_int("patience", self.patience, minimum=1)
        check_float("min_improvement", self.min_improvement, minimum=0.0)


@dataclass(frozen=True)
class FitResult:
    """A trained control with its status and per-epoch history (epoch 0 = before training)."""

    model: nn.Module
    status: str
    best_epoch: int
    epochs: int
    seconds: float
    history: pd.DataFrame
    reason: str = ""
    learning_rate: float | None = None  # set where it was chosen on validation (the v2 nulls)


def select_sequences(batch: TargetBatch, index: np.ndarray) -> TargetBatch:
    """The sub-batch of whole sequences at ``index`` (the other head's q, k follow along)."""
    index_tensor = torch.as_tensor(index, dtype=torch.long)
    alternative = None
    if batch.alternative_qk is not None:
        alternative = tuple(x[index_tensor] for x in batch.alternative_qk)
    ids = tuple(batch.sequence_ids[i] for i in index) if batch.sequence_ids else tuple(int(i) for i in index)
    return replace(batch, q=batch.q[index_tensor], k=batch.k[index_tensor], v=batch.v[index_tensor],
                   sequence_ids=ids, alternative_qk=alternative)


def split_by_sequence(batch: TargetBatch, sizes: dict[str, int], seed: int) -> dict[str, TargetBatch]:
    """Disjoint splits of whole sequences, e.g. {"train": 16, "validation": 4, "test": 8}, by a seeded
    permutation; the sizes must add up to the batch's sequence count."""
    for name, size in sizes.items():
        check_int(f"sizes[{name!r}]", size, minimum=1)
    if sum(sizes.values()) != batch.n_sequences:
        raise fail("sizes", f"split sizes adding up to the {batch.n_sequences} sequences of the batch", sizes)
    order = np.random.default_rng(check_int("seed", seed, minimum=0)).permutation(batch.n_sequences)
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = select_sequences(batch, np.sort(order[start:start + size]))
        start += size
    return splits


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: sequence i is paired with another sequence's outputs."""
    n = check_int("n", n, minimum=2)
    cycle = np.random.default_rng(check_int("seed", seed, minimum=0)).permutation(n)
    # one random n-cycle through all sequences: no fixed point by construction
    result = np.empty(n, dtype=int)
    result[cycle] = np.roll(cycle, -1)
    return result


def exact_outputs(batch: TargetBatch) -> torch.Tensor:
    """The target's exact attention (float32, as the controls are trained in float32)."""
    return softmax_attention(batch.q, batch.k, batch.v, batch.causal)


def relative_errors(estimate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|Y_hat - Y|_F / |Y|_F per sequence."""
    return (estimate - exact).norm(dim=(-2, -1)) / exact.norm(dim=(-2, -1))


def _loss(model: nn.Module, batch: TargetBatch, targets: torch.Tensor, index) -> torch.Tensor:
    """Mean squared relative error; NaN where the model's weights have left what the circuit can compute (its
    guard refuses a non-finite output): the fit then says diverged."""
    try:
        estimate = model(batch.q[index], batch.k[index], batch.v[index], batch.causal)
    except InputError:
        return torch.tensor(math.nan)
    return relative_errors(estimate, targets[index]).square().mean()


def _evaluate(model: nn.Module, batch: TargetBatch, targets: torch.Tensor, chunk: int) -> float:
    with torch.no_grad():
        total = sum(float(_loss(model, batch, targets, slice(s, s + chunk))) * min(chunk, batch.n_sequences - s)
                    for s in range(0, batch.n_sequences, chunk))
    return total / batch.n_sequences


def fit(model: nn.Module, train: TargetBatch, validation: TargetBatch, budget: TrainingBudget, seed: int,
        train_targets: torch.Tensor | None = None, validation_targets: torch.Tensor | None = None,
        early_stopping: bool = True, optimiser: str = "adam") -> FitResult:
    """Train ``model`` on whole training sequences; early stopping on the validation sequences (or, with
    ``early_stopping=False``, the full budget; see the module docstring).

    Targets default to the exact attention of each split; the capacity null passes shuffled ones.
    """
    if train.n_sequences < 1 or validation.n_sequences < 1:
        raise fail("train, validation", "at least one sequence each", (train.n_sequences, validation.n_sequences))
    check_choice("optimiser", optimiser, OPTIMISERS)
    train_targets = exact_outputs(train) if train_targets is None else train_targets
    validation_targets = exact_outputs(validation) if validation_targets is None else validation_targets
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    step = _adam_epoch if optimiser == "adam" else _lbfgs_epoch
    optimiser = (torch.optim.Adam(model.parameters(), lr=budget.learning_rate) if optimiser == "adam" else
                 torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=LBFGS_ITERATIONS,
                                   line_search_fn="strong_wolfe"))
    chunk = budget.batch_sequences
    started = time.perf_counter()
    best_loss = _evaluate(model, validation, validation_targets, chunk)
    best_state, best_epoch, since_best = copy.deepcopy(model.state_dict()), 0, 0
    history = [(0, _evaluate(model, train, train_targets, chunk), best_loss)]
    status, reason = "not_converged", f"still improving after max_epochs={budget.max_epochs}"
    for epoch in range(1, budget.max_epochs + 1):
        train_loss = step(model, optimiser, train, train_targets, chunk, generator)
        validation_loss = _evaluate(model, validation, validation_targets, chunk)
        history.append((epoch, train_loss, validation_loss))
        if not (math.isfinite(train_loss) and math.isfinite(validation_loss)):
            status, reason = "diverged", f"non-finite loss at epoch {epoch}; kept epoch {best_epoch}"
            break
        if not early_stopping:
            best_state, best_epoch = copy.deepcopy(model.state_dict()), epoch  # the last finite state
            continue
        if validation_loss < best_loss * (1.0 - budget.min_improvement):
            best_loss, best_state, best_epoch, since_best = validation_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            since_best += 1
            if since_best >= budget.patience:
                status, reason = "converged", f"no validation improvement for {budget.patience} epochs"
                break
    if not early_stopping and status != "diverged":
        status, reason = _plateau_status([row[1] for row in history], budget)
    model.load_state_dict(best_state)
    model.eval()
    if status != "converged":
        LOG.warning("fit of %s: %s (%s)", type(model).__name__, status, reason,  # the status travels with the
                    extra={"routine": status == "not_converged"})  # rows; one control's: the log file, not the console
    frame = pd.DataFrame(history, columns=["epoch", "train_loss", "validation_loss"])
    return FitResult(model, status, best_epoch, int(frame["epoch"].iloc[-1]), time.perf_counter() - started,
                     frame, reason)


def _adam_epoch(model: nn.Module, optimiser, train: TargetBatch, targets: torch.Tensor, chunk: int,
                generator: torch.Generator) -> float:
    """One pass over the training sequences in shuffled mini-batches; the mean loss (NaN once non-finite)."""
    order = torch.randperm(train.n_sequences, generator=generator)
    total = 0.0
    for start in range(0, train.n_sequences, chunk):
        index = order[start:start + chunk]
        optimiser.zero_grad()
        loss = _loss(model, train, targets, index)
        if not bool(torch.isfinite(loss)):  # diverged: no step from a non-finite loss
            return math.nan
        loss.backward()
        optimiser.step()
        total += float(loss.detach()) * len(index)
    return total / train.n_sequences


def _lbfgs_epoch(model: nn.Module, optimiser, train: TargetBatch, targets: torch.Tensor, chunk: int,
                 generator: torch.Generator) -> float:
    """One L-BFGS step on the loss over every training sequence; the loss before it (NaN once non-finite)."""
    everything = slice(0, train.n_sequences)

    def closure():
        optimiser.zero_grad()
        loss = _loss(model, train, targets, everything)
        if bool(torch.isfinite(loss)):
            loss.backward()
        return loss

    loss = float(optimiser.step(closure).detach())
    if not math.isfinite(loss) or not all(all_finite(p) for p in model.parameters()):
        return math.nan
    return loss


def _plateau_status(train_losses: list[float], budget: TrainingBudget) -> tuple[str, str]:
    """Full-budget fits: converged when the training loss levelled off over the last ``patience`` epochs."""
    window = budget.patience
    if len(train_losses) < 2 * window:
        return "not_converged", f"max_epochs={budget.max_epochs} is shorter than two windows of patience={window}"
    # mean over the last window against the window before: robust to epoch-to-epoch SGD noise
    earlier = sum(train_losses[-2 * window:-window]) / window
    last = sum(train_losses[-window:]) / window
    change = (earlier - last) / max(abs(earlier), 1e-300)
    if change < budget.min_improvement:
        return "converged", (f"mean training loss improved by {change:+.2%} from the previous {window} epochs "
                             f"to the last {window}")
    return "not_converged", (f"training loss still falling ({change:+.2%} from the previous {window} epochs "
                             f"to the last {window})")


def predict(model: nn.Module, batch: TargetBatch, chunk: int = 8) -> torch.Tensor:
    """The control's outputs on every sequence of ``batch``, without gradients, in chunks of sequences."""
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    with torch.no_grad():
        return torch.cat([model(batch.q[s:s + chunk], batch.k[s:s + chunk], batch.v[s:s + chunk], batch.causal)
                          for s in range(0, batch.n_sequences, chunk)])
