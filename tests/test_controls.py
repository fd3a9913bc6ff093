"""astrostats.controls: accounting, fitted controls, training under a budget, splits, paired comparisons."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from astrostats.circuits.astrocyte import run_circuit
from astrostats.circuits.baselines import uniform_attention
from astrostats.circuits.features import draw_projection
from astrostats.controls import (ControlPlan, FittedRegressor, LearnedFeatureAttention, TrainingBudget,
                                 accounting_table, fit, mlp_size_for_budget, predict, run_controls,
                                 split_by_sequence)
from astrostats.controls.accounting import mlp_fitted_count
from astrostats.controls.comparisons import Family, comparisons_table
from astrostats.controls.refit import RefitLadder
from astrostats.controls.training import derangement, exact_outputs, relative_errors
from astrostats.targets.synthetic import synthetic_head
from astrostats.validation import InputError

D = 16


@pytest.fixture(scope="module")
def splits():
    batch = synthetic_head(n_sequences=12, n_tokens=24, d_head=D, seed=5)
    return split_by_sequence(batch, {"train": 4, "validation": 2, "test": 6}, seed=1)


def test_accounting_counts_follow_the_definitions():
    table = accounting_table(("astrocyte", "uniform", "learned_feature", "fitted_mlp"), (8, 64), D, D)
    circuit = table[table["circuit"] == "astrocyte"].set_index("m")
    assert (circuit["n_fitted"] == 0).all()
    assert circuit.loc[64, "n_fixed_random"] == 64 * D
    assert circuit.loc[64, "n_input_determined"] == 64 * D + 64  # H (d_v x m) and g (m)
    learned = table[table["circuit"] == "learned_feature"].set_index("m")
    assert (learned["n_fitted"] == learned.index.to_numpy() * D).all()
    assert (learned["budget_mismatch"] == 0).all()
    mlp = table[table["circuit"] == "fitted_mlp"]
    assert (mlp["budget_mismatch"].abs() <= 0.25).all()
    assert table.loc[table["circuit"] == "uniform", "m"].isna().all()


def test_mlp_budget_that_cannot_be_matched_says_why():
    with pytest.raises(InputError, match="hidden width 1"):
        mlp_size_for_budget(2 * D, D, D, 0.25)  # one hidden unit costs 4d+1 > 2d parameters
    size = mlp_size_for_budget(64 * D, D, D, 0.25)
    assert size.n_fitted == mlp_fitted_count(size.hidden, D, D)


def test_learned_feature_attention_starts_as_the_circuit(splits):
    batch = splits["test"]
    projection = draw_projection(32, D, seed=3)
    model = LearnedFeatureAttention(projection)
    assert model.n_fitted == 32 * D
    expected = run_circuit(batch.q, batch.k, batch.v, projection).output
    assert torch.equal(predict(model, batch), expected)


def test_fitted_regressor_starts_as_uniform_attention_and_matches_its_count(splits):
    batch = splits["test"]
    model = FittedRegressor.for_budget(64, D, D, seed=0)
    assert model.n_fitted == mlp_size_for_budget(64 * D, D, D, 0.25).n_fitted
    torch.testing.assert_close(predict(model, batch), uniform_attention(batch.q, batch.k, batch.v))


def test_split_by_sequence_is_disjoint_complete_and_reproducible():
    batch = synthetic_head(n_sequences=10, n_tokens=8, d_head=4, seed=0)
    first = split_by_sequence(batch, {"train": 6, "test": 4}, seed=3)
    again = split_by_sequence(batch, {"train": 6, "test": 4}, seed=3)
    train, test = set(first["train"].sequence_ids), set(first["test"].sequence_ids)
    assert not train & test and train | test == set(range(10))
    assert first["test"].sequence_ids == again["test"].sequence_ids
    for index, sequence in enumerate(first["test"].sequence_ids):  # whole sequences, tokens intact
        assert torch.equal(first["test"].q[index], batch.q[sequence])
    with pytest.raises(InputError, match="sizes"):
        split_by_sequence(batch, {"train": 6, "test": 5}, seed=3)


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 17):
        permutation = derangement(n, seed=n)
        assert sorted(permutation) == list(range(n))
        assert (permutation != np.arange(n)).all()


def test_fit_keeps_the_best_validation_state_and_is_reproducible(splits):
    budget = TrainingBudget(max_epochs=5, patience=2, batch_sequences=2, learning_rate=0.05)
    runs = [fit(LearnedFeatureAttention(draw_projection(16, D, seed=2)), splits["train"], splits["validation"],
                budget, seed=0) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].history, runs[1].history)
    result = runs[0]
    best = result.history["validation_loss"].iloc[result.best_epoch]
    assert best == result.history["validation_loss"].min()
    error = relative_errors(predict(result.model, splits["validation"]), exact_outputs(splits["validation"]))
    torch.testing.assert_close(error.square().mean().item(), best, rtol=1e-5, atol=0)


def test_unconverged_and_diverged_fits_are_flagged(splits):
    short = fit(LearnedFeatureAttention(draw_projection(16, D, seed=2)), splits["train"], splits["validation"],
                TrainingBudget(max_epochs=1, patience=3), seed=0)
    assert short.status == "not_converged" and "max_epochs" in short.reason
    wild = fit(LearnedFeatureAttention(draw_projection(16, D, seed=2)), splits["train"], splits["validation"],
               TrainingBudget(max_epochs=3, patience=3, learning_rate=1e30), seed=0, early_stopping=False)
    assert wild.status == "diverged"
    assert torch.isfinite(predict(wild.model, splits["test"])).all()  # the last finite state is kept


def test_run_controls_keeps_flagged_fits_and_scores_capacity_null_in_sample(splits):
    plan = ControlPlan(m=(32,), n_seeds=1, budget=TrainingBudget(max_epochs=1, patience=2))
    measurements, training, history, refits = run_controls(splits, plan, progress=False)
    assert refits.empty  # no v2 null, nothing to refit
    assert set(training["circuit"]) == {"learned_feature", "fitted_mlp", "learned_feature_shuffled",
                                        "fitted_mlp_shuffled"}
    assert (training["status"] == "not_converged").all()
    assert set(measurements["status"]) == {"not_converged"}  # flagged, not dropped
    shuffled = measurements[measurements["scored_against"] == "shuffled"]
    assert set(shuffled["split"]) == {"train", "validation"}
    assert set(shuffled["circuit"]) == {"learned_feature_shuffled", "fitted_mlp_shuffled"}
    assert len(history) == 4 * 2  # epochs 0 and 1 of four fits


def _paired_table(ratio: float, n_sequences: int, noise: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    circuit = rng.uniform(0.1, 0.2, size=(2, n_sequences))
    control = circuit * ratio * np.exp(rng.normal(0, noise, size=circuit.shape))
    rows = []
    for name, errors in (("astrocyte", circuit), ("null", control)):
        for seed_index in range(2):
            for sequence in range(n_sequences):
                rows.append({"split": "test", "circuit": name, "m": 64, "seed": seed_index, "sequence_id": sequence,
                             "metric": "relative_error", "value": errors[seed_index, sequence],
                             "scored_against": "true", "status": "ok"})
    return pd.DataFrame(rows)


def test_comparisons_detect_a_clear_effect_and_refute_a_null_one():
    family = [Family("primary", ("null",), (64,), ("test",), margin=0.1)]
    clear = comparisons_table(_paired_table(2.0, 16, 0.05), family, n_resamples=1999)
    row = clear.iloc[0]
    assert row["decision"] == "circuit_better" and row["ci_low"] > 1.1 and row["p_value_adjusted"] < 0.05
    equal = comparisons_table(_paired_table(1.0, 16, 0.05), family, n_resamples=1999).iloc[0]
    assert equal["decision"] == "not_better" and equal["ci_high"] < 1.1
    # the CI is a 95 % interval around the true ratio 1: it covers it
    assert equal["ci_low"] <= 1.0 <= equal["ci_high"]


def test_comparisons_flag_tiny_samples_and_unconverged_controls():
    family = [Family("primary", ("null",), (64,), ("test",), margin=0.1)]
    single = comparisons_table(_paired_table(2.0, 1, 0.05), family, n_resamples=199).iloc[0]
    assert single["status"] == "insufficient_data" and "need at least 2" in single["reason"]
    flagged = _paired_table(2.0, 16, 0.05)
    flagged.loc[flagged["circuit"] == "null", "status"] = "not_converged"
    row = comparisons_table(flagged, family, n_resamples=199).iloc[0]
    assert row["status"] == "control_flagged" and row["decision"] != "circuit_better"


def test_comparison_seeds_depend_on_names_not_on_loop_position():
    """Adding a family and a control before a comparison leaves its p-value and interval as they were."""
    base = _paired_table(1.15, 12, 0.2)
    other = base[base["circuit"] == "null"].assign(circuit="other")
    measurements = pd.concat([base, other], ignore_index=True)
    alone = comparisons_table(measurements, [Family("primary", ("null",), (64,), ("test",), margin=0.1)],
                              n_resamples=199, seed=7)
    crowded = comparisons_table(measurements, [Family("efficiency", ("other",), (64,), ("test",)),
                                               Family("primary", ("other", "null"), (64,), ("test",), margin=0.1)],
                                n_resamples=199, seed=7)
    first = alone.iloc[0]
    again = crowded[(crowded["family"] == "primary") & (crowded["control"] == "null")].iloc[0]
    for column in ("p_value", "ci_low", "ci_high", "statistic"):
        assert first[column] == again[column]
    reseeded = comparisons_table(measurements, [Family("primary", ("null",), (64,), ("test",), margin=0.1)],
                                 n_resamples=199, seed=8).iloc[0]
    assert (reseeded["ci_low"], reseeded["ci_high"]) != (first["ci_low"], first["ci_high"])  # the seed still counts


def test_plateau_compares_window_means_not_two_noisy_epochs():
    from astrostats.controls.training import TrainingBudget, _plateau_status

    budget = TrainingBudget(max_epochs=40, patience=5, min_improvement=0.01)
    falling = [1.0 * 0.97**epoch for epoch in range(40)]  # 3 % per epoch: about 14 % per window
    noisy_flat = [1.0 + (0.05 if epoch % 2 else -0.05) for epoch in range(40)]  # +-5 % noise, no trend
    assert _plateau_status(falling, budget)[0] == "not_converged"
    assert _plateau_status(noisy_flat, budget)[0] == "converged"
    assert _plateau_status(falling[:9], budget)[0] == "not_converged"  # shorter than two windows


# ------------------------------------------------------------------------------ amendment v2 (issue 13)
def test_closed_form_null_is_the_least_squares_optimum(splits):
    """Targets the random features can represent exactly are recovered (validation loss near 0), and on
    shuffled targets the solution is a stationary point: the weighted normal equations hold."""
    from astrostats.controls.closed_form import RandomFeatureRidge

    model = RandomFeatureRidge(D, D, 64, seed=3)
    truth = RandomFeatureRidge(D, D, 64, seed=3)
    truth.readout.copy_(torch.randn(64, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    targets = {name: truth(batch.q, batch.k, batch.v) for name, batch in splits.items()}
    model.solve(splits["train"], targets["train"], splits["validation"], targets["validation"])
    assert model.ridge == 0.0  # the exact least-squares solution wins on validation
    assert model.loss(splits["train"], targets["train"]) < 1e-10  # float32 outputs: relative error ~1e-7
    shuffled = exact_outputs(splits["train"])[torch.as_tensor(derangement(4, 0))]
    model.solve(splits["train"], shuffled, splits["validation"], exact_outputs(splits["validation"]))
    design, targets_flat, weights = model._system(splits["train"], shuffled)
    residual = targets_flat - (design @ model.readout + model.bias)
    gradient = design.T @ (weights.unsqueeze(-1) * residual) - model.ridge * float(
        (torch.linalg.svdvals((design - (design * weights[:, None]).sum(0) / weights.sum())
                              * weights.sqrt()[:, None]) ** 2).mean()) * model.readout
    assert float(gradient.abs().max()) < 1e-8 * float((design.T @ (weights.unsqueeze(-1) * targets_flat)).abs().max())


@pytest.mark.parametrize("attempts", [0, 3])
def test_v2_nulls_are_fitted_on_every_draw_and_flag_failed_learning(splits, attempts):
    """A learning rate of 1e-12 cannot move Adam: the first fit never learns. Without refits the null is
    failed_to_learn; with the ladder every rung is tried and recorded, and the fit is failed_to_learn exactly when
    no rung learned (on 4 shuffled training sequences L-BFGS memorises without generalising, so here none does;
    the planted rescues are below)."""
    plan = ControlPlan(m=(32,), n_seeds=2, controls=("fitted_mlp",), capacity_null=False, v2_nulls=True,
                       null_learning_rates=(1e-12,), control_seeds=1, refit=RefitLadder(attempts, 2, 6),
                       budget=TrainingBudget(max_epochs=3, patience=1, learning_rate=1e-12))
    measurements, training, _, refits = run_controls(splits, plan, progress=False)
    assert sorted(training.groupby("circuit").size().items()) == [
        ("fitted_mlp", 1), ("fitted_mlp_v2_shuffled", 2), ("ridge_shuffled", 2)]
    assert (training.loc[training["circuit"] == "ridge_shuffled", "status"] == "converged").all()
    null = training[training["circuit"] == "fitted_mlp_v2_shuffled"]
    assert set(refits["circuit"]) == {"fitted_mlp_v2_shuffled"} and set(refits["seed"]) == {0, 1}
    assert not refits.loc[refits["attempt"] == 1, "learned"].any()
    assert (refits.groupby("seed")["used"].sum() == 1).all()  # one attempt per fit is used
    if attempts == 0:
        assert (null["status"] == "failed_to_learn").all() and (null["attempts"] == 1).all()
        assert (null["best_epoch"] == 0).all()
    else:
        assert list(refits.loc[refits["seed"] == 0, "step"]) == ["first", "longer", "reseeded", "lbfgs"]
        assert set(refits.loc[refits["step"] == "lbfgs", "optimiser"]) == {"lbfgs"}
        learned = refits.groupby("seed")["learned"].any()
        failed = null.set_index("seed")["status"] == "failed_to_learn"
        assert (failed == ~learned.reindex(failed.index)).all() and (null["attempts"] == 4).all()
    assert set(measurements.loc[measurements["circuit"] == "constant", "split"]) == set(splits)


def test_constant_floor_replaces_a_null_worse_than_the_constant_predictor():
    table = _paired_table(5.0, 12, 0.05)  # a broken null: five times the circuit's error
    constant = table[(table["circuit"] == "astrocyte") & (table["seed"] == 0)].assign(
        circuit="constant", m=pd.NA, seed=pd.NA, value=lambda t: t["value"] * 2.0)
    measurements = pd.concat([table, constant], ignore_index=True)
    family = [Family("primary_v2", ("null",), (64,), ("test",), margin=0.1, design="crossed", constant_floor=True)]
    row = comparisons_table(measurements, family, n_resamples=999).iloc[0]
    assert bool(row["replaced_by_constant"])
    circuit = table[table["circuit"] == "astrocyte"].groupby("sequence_id")["value"].mean()
    expected = (constant.set_index("sequence_id")["value"].reindex(circuit.index).mean()) / circuit.mean()
    assert row["ratio"] == pytest.approx(expected)
    assert "crossed" in row["method"]


# ------------------------------------------------------------------ the refit ladder (issue 27, point 3)
from astrostats.controls.refit import constant_loss, refit_until_learned  # noqa: E402
from astrostats.controls.fitted import sequence_means  # noqa: E402


class _Gated(torch.nn.Module):
    """y = mean value + readout(relu(hidden(mean value))): with ``dead`` the hidden bias is -1e3, every unit is off and no
    gradient reaches any weight (a deliberately bad initialisation); ``capacity=False`` multiplies the learned part
    by 0 (a null that cannot learn anything)."""

    def __init__(self, seed: int, dead: bool, capacity: bool = True):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.hidden = torch.nn.Linear(D, 32)
        self.readout = torch.nn.Linear(32, D, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.randn(32, D, generator=generator) / D ** 0.5)
            self.hidden.bias.fill_(-1e3 if dead else 0.0)
            self.readout.weight.copy_(torch.randn(D, 32, generator=generator) * 0.01)
        self.gain = 1.0 if capacity else 0.0

    def forward(self, q, k, v, causal=False):
        mean_value = sequence_means(v, causal)
        return mean_value + self.gain * self.readout(torch.relu(self.hidden(mean_value)))


def _shuffled_targets(splits):
    return tuple(exact_outputs(splits[name])[torch.as_tensor(derangement(splits[name].n_sequences, 3))]
                 for name in ("train", "validation"))


def _ladder(splits, build, attempts=3, targets=None):
    targets = (exact_outputs(splits["train"]), exact_outputs(splits["validation"])) if targets is None else targets
    budget = TrainingBudget(max_epochs=20, patience=3, learning_rate=0.05)
    first = fit(build(11), splits["train"], splits["validation"], budget, seed=0, train_targets=targets[0],
                validation_targets=targets[1])
    return refit_until_learned(first, build, 11, splits["train"], splits["validation"], targets, budget, 0,
                               RefitLadder(attempts, 2, 40))


def test_a_null_with_a_dead_start_is_rescued_by_another_initialisation(splits):
    """Planted: every unit of the first start is off, so neither the first fit nor a longer one from the same
    start can move; the reseeded attempt starts alive and learns, and is the one used. The target is minus the
    attention output, so the start (the mean value) is far worse than the best constant and learning is a linear
    map of the mean value, which generalises to held-out sequences."""
    negated = tuple(-exact_outputs(splits[name]) for name in ("train", "validation"))
    used, rows = _ladder(splits, lambda start: _Gated(start, dead=start == 11), targets=negated)
    assert [row["step"] for row in rows] == ["first", "longer", "reseeded"]
    assert [row["learned"] for row in rows] == [False, False, True]
    assert [row["used"] for row in rows] == [False, False, True]
    assert rows[2]["init_seed"] != 11 and rows[1]["max_epochs"] == 40 and rows[1]["patience"] == 6
    assert used.status != "failed_to_learn" and used.best_epoch > 0 and "refit 2 (reseeded" in used.reason
    assert rows[2]["heldout_loss"] < rows[0]["heldout_loss"]
    # a start that learns is used as it is: no refit
    used, rows = _ladder(splits, lambda start: _Gated(start, dead=False), targets=negated)
    assert len(rows) == 1 and rows[0]["learned"] and rows[0]["used"] and used.status != "failed_to_learn"


def test_a_null_that_cannot_learn_ends_as_a_named_limitation(splits):
    """Planted: no capacity (the learned part is multiplied by 0) and a start worse than the best constant
    predictor on held-out data: every rung fails, the first attempt is kept and flagged failed_to_learn."""
    used, rows = _ladder(splits, lambda start: _Gated(start, dead=False, capacity=False), targets=_shuffled_targets(splits))
    assert [row["step"] for row in rows] == ["first", "longer", "reseeded", "lbfgs"]
    assert not any(row["learned"] for row in rows) and [row["used"] for row in rows] == [True, False, False, False]
    assert rows[0]["heldout_loss"] > constant_loss(*_shuffled_targets(splits)) == rows[0]["constant_heldout_loss"]
    assert used.status == "failed_to_learn" and "after 3 refit(s)" in used.reason
    used, rows = _ladder(splits, lambda start: _Gated(start, dead=False, capacity=False), attempts=1,
                         targets=_shuffled_targets(splits))
    assert len(rows) == 2 and "after 1 refit(s)" in used.reason  # the ladder is bounded by the spec


def test_a_fit_at_the_constant_predictor_has_learned_all_there_is(splits):
    """On shuffled targets nothing generalises beyond the training-mean output: a null whose held-out loss is at
    or below the constant's counts as learned even if it never improved on its start."""
    targets = _shuffled_targets(splits)
    floor = constant_loss(*targets)
    history = pd.DataFrame({"epoch": [0], "train_loss": [floor], "validation_loss": [floor]})
    from astrostats.controls.refit import has_learned
    from astrostats.controls.training import FitResult
    assert has_learned(FitResult(None, "converged", 0, 3, 0.0, history), floor)
    assert not has_learned(FitResult(None, "converged", 0, 3, 0.0, history.assign(validation_loss=floor * 1.01)),
                           floor)


def test_refit_ladder_bounds_are_checked():
    with pytest.raises(InputError, match="refit_attempts"):
        RefitLadder(attempts=4)
    with pytest.raises(InputError, match="refit_factor"):
        RefitLadder(factor=0)
    with pytest.raises(InputError, match="optimiser"):
        fit(_Gated(0, dead=False), *(synthetic_head(n_sequences=2, n_tokens=4, d_head=D, seed=0),) * 2,
            TrainingBudget(), seed=0, optimiser="sgd")
