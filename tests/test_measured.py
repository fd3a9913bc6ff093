"""Direct measurement at large m: nested blocks compose exactly into one circuit; crossed bootstrap; selection."""
import numpy as np
import pandas as pd
import pytest
import torch

from astrostats.circuits.astrocyte import run_circuit
from astrostats.runner import references, score
from astrostats.stats.crossed import crossed_bootstrap, crossed_t_test, share_below
from astrostats.studies import measured
from astrostats.targets.synthetic import synthetic_head


def test_nested_blocks_pass_through_every_m():
    blocks, checkpoints = measured.nested_blocks([1000, 10000, 250000], max_block=100000)
    assert blocks == [1000, 9000, 100000, 100000, 40000]
    assert checkpoints == {0: 1000, 1: 10000, 4: 250000}


@pytest.mark.parametrize("causal", [False, True])
def test_blocks_compose_into_the_circuit_of_all_their_units(causal):
    """The measured circuit at m = 700 (blocks 300 + 300 + 100) is the circuit with the three W's stacked."""
    target = synthetic_head(n_sequences=3, n_tokens=40, d_head=8, logit_scale="typical", seed=1, causal=causal)
    rows = measured.measured_table([target], [300, 700], 2, 5, memory_mb=64, max_block=300)
    blocks, _ = measured.nested_blocks([300, 700], 300)
    for seed in range(2):
        projection = torch.cat([measured.block_projection(5, seed, i, size, 8) for i, size in enumerate(blocks)])
        result = run_circuit(target.q, target.k, target.v, projection, "positive", causal)
        exact, log_z = references(target)
        expected = score(result.output, exact, result.log_response, log_z)
        for metric in ("relative_error", "normaliser_error"):
            got = rows.query(f"m == 700 and seed == {seed} and metric == '{metric}'")["value"].to_numpy()
            np.testing.assert_allclose(got, expected[metric].numpy(), rtol=2e-5)


def test_crossed_bootstrap_covers_a_planted_mean_and_tests_both_sides():
    rng = np.random.default_rng(0)
    values = 0.2 + 0.02 * rng.standard_normal((3, 4, 8))
    values[1] = 0.02 + 0.005 * rng.standard_normal((4, 8))
    values[2] = 0.1 + 0.02 * rng.standard_normal((4, 8))
    table, draws = crossed_bootstrap(values, 0.1, n_resamples=999, seed=1)
    assert (table["ci_low"] <= values.mean(axis=(1, 2))).all() and (table["ci_high"] >= values.mean(axis=(1, 2))).all()
    assert table.loc[0, "p_above"] == pytest.approx(1 / 1000) and table.loc[1, "p_below"] == pytest.approx(1 / 1000)
    assert table.loc[2, "p_above"] > 0.05 and table.loc[2, "p_below"] > 0.05  # at the threshold: neither side
    share = share_below(table["statistic"], draws, 0.1)
    assert share["n"] == 3 and share["ci_low"] <= share["statistic"] <= share["ci_high"]


def test_resamples_suffice_for_holm_over_many_heads():
    heads = tuple((0, h) for h in range(40))
    rows = pd.DataFrame([{"target": "minilm", "layer": 0, "head": h, "m": 1000, "seed": s, "sequence_id": q,
                          "metric": "relative_error", "value": 0.5} for _, h in heads for s in range(2) for q in range(3)])
    rows["value"] += np.random.default_rng(0).normal(0, 0.01, len(rows))
    summary, _ = measured.summarise(rows, n_resamples=100, seed=0)
    assert (summary["n_resamples"] >= 2 * 40 / 0.05).all()
    assert (summary["p_above_adjusted"] < 0.05).all()


def test_heads_are_tested_by_the_crossed_t_test_and_the_bootstrap_p_is_kept_beside():
    """Amendment 2026-12-06: a head's p-values against the tolerance are the crossed design's t-test's (with se and
    df); the crossed bootstrap's, which they replaced, stay in the summary as p_above_bootstrap / p_below_bootstrap."""
    rng = np.random.default_rng(3)
    rows = pd.DataFrame([{"target": "minilm", "layer": 0, "head": h, "m": 1000, "seed": s, "sequence_id": q,
                          "metric": "relative_error", "value": level * np.exp(0.1 * rng.standard_normal())}
                         for h, level in enumerate((0.05, 0.1, 0.3)) for s in range(4) for q in range(8)])
    summary, _ = measured.summarise(rows, n_resamples=199, seed=0)
    grids = np.stack([rows[rows["head"] == h]["value"].to_numpy().reshape(4, 8) for h in range(3)])
    expected = crossed_t_test(grids, 0.1)
    for column in ("se", "df", "p_above", "p_below"):
        np.testing.assert_allclose(summary[column].to_numpy(), expected[column].to_numpy())
    boot, _ = crossed_bootstrap(grids, 0.1, n_resamples=199, seed=measured.seed_sequence(0, 1000))
    np.testing.assert_allclose(summary["p_above_bootstrap"].to_numpy(), boot["p_above"].to_numpy())
    assert summary.loc[0, "p_below"] < 0.05 and summary.loc[2, "p_above"] < 0.05
    assert summary.loc[1, "p_below"] > 0.05 and summary.loc[1, "p_above"] > 0.05


def test_heads_to_extend_picks_undetermined_heads_nearest_first():
    required = pd.DataFrame({"target": "minilm", "layer": 0, "head": [0, 1, 2, 3],
                             "class_human": ["undetermined", "within", "undetermined", "undetermined"],
                             "m_last": [100000, 100000, 100000, 2000000], "m_required_lower": [5e6, 1e3, 2e5, 1e5]})
    assert measured.heads_to_extend(required, 5, [2000000]) == [("minilm", 0, 2), ("minilm", 0, 0)]
    assert measured.heads_to_extend(required, 1, [2000000]) == [("minilm", 0, 2)]


@pytest.mark.parametrize("case", range(6))
def test_head_grids_match_a_pivot_table_per_head(case):
    """The one-pass grids equal pandas' pivot_table per head (the definition, :func:`measured._grid`) on shuffled
    rows, heads missing a seed or a sequence, repeated cells (their mean), negative and non-integer labels, and
    with a NaN value (the per-head path)."""
    rng = np.random.default_rng(case)
    rows = pd.DataFrame([(layer, head, seed, sequence) for layer in range(2) for head in range(-2, 3)
                         for seed in (3, 7, 11) for sequence in (0, 5, 9, 12)], columns=["layer", "head", "seed",
                                                                                         "sequence_id"])
    rows = rows.sample(frac=0.8 if case else 1.0, random_state=case)  # some heads lose a seed or a sequence
    rows = pd.concat([rows, rows.sample(n=7, random_state=case)]).sample(frac=1.0, random_state=case + 10)
    rows["value"] = rng.lognormal(size=len(rows))
    if case == 4:
        rows["layer"] = rows["layer"].map({0: "early", 1: "late"})
    if case == 5:
        rows.iloc[3, rows.columns.get_loc("value")] = np.nan
    heads, grids = measured._head_grids(rows)
    expected = [(key, measured._grid(group)) for key, group in rows.groupby(["layer", "head"], sort=False)]
    assert heads == [key for key, _ in expected]
    for grid, (_, reference) in zip(grids, expected):
        # a head's own seeds and sequences come first, NaN-padded after them
        assert np.array_equal(grid[:reference.shape[0], :reference.shape[1]], reference, equal_nan=True)
        assert np.isnan(grid[reference.shape[0]:]).all() and np.isnan(grid[:, reference.shape[1]:]).all()
