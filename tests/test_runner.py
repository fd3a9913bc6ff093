"""The runner's tidy table, the error law on the paper's defaults, and the null circuits (issue 2)."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import torch
from scipy import stats

from astrostats.runner import Sweep, run_sweep
from astrostats.targets.synthetic import synthetic_head
from astrostats.validation import InputError


@pytest.fixture(scope="module")
def typical_table():
    target = synthetic_head(n_sequences=4, logit_scale="typical", seed=1)  # d_head = 64, N = 197
    sweep = Sweep(m=(64, 256, 1024, 4096), n_seeds=6,
                  circuits=("astrocyte", "shuffled_kv", "mismatched_target", "no_astrocyte", "uniform", "elu_linear"))
    return run_sweep([target], sweep, progress=False)


def test_table_is_tidy_with_one_row_per_measurement(typical_table):
    expected = {"target", "layer", "head", "logit_scale", "circuit", "feature_map", "m", "seed", "sequence_id",
                "metric", "value"}
    assert expected <= set(typical_table.columns)
    astro = typical_table[typical_table["circuit"] == "astrocyte"]
    assert len(astro) == 4 * 6 * 4 * 4  # m x seeds x sequences x metrics (output, normaliser L2 and per token, cosine)
    assert not astro.duplicated(["m", "seed", "sequence_id", "metric"]).any()
    assert np.isfinite(typical_table["value"]).all()


def test_error_slope_against_m_is_minus_one_half(typical_table):
    errors = typical_table[(typical_table["circuit"] == "astrocyte") & (typical_table["metric"] == "relative_error")]
    fit = sm.OLS(np.log(errors["value"].to_numpy(float)),
                 sm.add_constant(np.log(errors["m"].to_numpy(float)))).fit()
    assert -0.6 <= fit.params[1] <= -0.4


def test_null_circuits_do_not_converge(typical_table):
    errors = typical_table[typical_table["metric"] == "relative_error"]
    largest = errors[errors["m"] == 4096]
    circuit = largest[largest["circuit"] == "astrocyte"].set_index(["seed", "sequence_id"])["value"]
    for null in ("shuffled_kv", "mismatched_target"):
        other = largest[largest["circuit"] == null].set_index(["seed", "sequence_id"])["value"]
        # paired one-sided sign test: the null is worse than the circuit on (nearly) every pair
        worse = int((other.loc[circuit.index] > circuit).sum())
        assert stats.binomtest(worse, len(circuit), alternative="greater").pvalue < 1e-3
    shuffled = errors[errors["circuit"] == "shuffled_kv"]
    slope = sm.OLS(np.log(shuffled["value"].to_numpy(float)),
                   sm.add_constant(np.log(shuffled["m"].to_numpy(float)))).fit()
    assert slope.conf_int()[1][0] > -0.1  # no m^(-1/2) law for keys and values of another sequence
    uniform = errors[errors["circuit"] == "uniform"]
    assert uniform["m"].isna().all() and len(uniform) == 4  # uniform attention has no m to fall with


def test_same_seed_gives_identical_tables():
    target = synthetic_head(n_sequences=3, n_tokens=32, d_head=8, seed=2)
    sweep = Sweep(m=(16, 64), n_seeds=5, feature_maps=("positive", "orthogonal"))
    first = run_sweep([target], sweep, progress=False)
    small_chunks = Sweep(m=(16, 64), n_seeds=5, feature_maps=("positive", "orthogonal"), memory_mb=1)
    pd.testing.assert_frame_equal(first, run_sweep([target], small_chunks, progress=False))


@pytest.mark.parametrize("kwargs, parameter", [
    ({"m": (0, 8)}, "m"), ({"m": ()}, "m"), ({"n_seeds": 0}, "n_seeds"),
    ({"feature_maps": ("gaussian",)}, "feature_maps"), ({"circuits": ("performer",)}, "circuits"),
    ({"circuits": ("dam_merge",)}, "circuits"), ({"circuits": ("interneuron_sampled",)}, "circuits"),
])
def test_bad_sweeps_name_the_parameter(kwargs, parameter):
    arguments = {"m": (8,), "n_seeds": 2, **kwargs}
    with pytest.raises(InputError, match=f"^{parameter}:"):
        Sweep(**arguments)


@pytest.mark.parametrize("kwargs, parameter", [
    ({"logit_scale": "sharp"}, "logit_scale"), ({"logit_scale": -1.0}, "logit_scale"),
    ({"n_tokens": 0}, "n_tokens"), ({"d_head": 2.5}, "d_head"),
])
def test_bad_synthetic_targets_name_the_parameter(kwargs, parameter):
    with pytest.raises(InputError, match=f"^{parameter}:"):
        synthetic_head(**kwargs)


def test_int_lists_are_read_once_so_iterators_work():
    from astrostats.validation import check_int_list

    assert check_int_list("m", (m for m in (8, 16))) == (8, 16)  # read twice, a generator came back empty
    with pytest.raises(InputError, match="m"):
        check_int_list("m", iter(()))


def test_the_per_token_normaliser_error_weighs_every_token_alike():
    """normaliser_error_per_token = mean_t |a_t / Z_t - 1|, from the astrocyte's response and the exact normaliser
    computed here independently; the L2 form is dominated by the tokens with the largest Z_t."""
    from astrostats.circuits import astrocyte_attention, log_normaliser
    from astrostats.runner import draw_projections

    target = synthetic_head(n_sequences=3, n_tokens=40, d_head=8, logit_scale="peaked", seed=2)
    sweep = Sweep(m=(64,), n_seeds=1)
    table = run_sweep([target], sweep, progress=False)
    found = table[table["metric"] == "normaliser_error_per_token"].sort_values("sequence_id")["value"].to_numpy()
    projection = draw_projections(sweep, "positive", 64, range(1), 8)[0].double()
    _, response = astrocyte_attention(target.q.double(), target.k.double(), target.v.double(), projection=projection,
                                      return_response=True)
    z = log_normaliser(target.q.double(), target.k.double()).exp()
    expected = (response / z - 1).abs().mean(-1).numpy()
    np.testing.assert_allclose(found, expected, rtol=1e-4)  # float32 circuit against a float64 recomputation
    l2 = table[table["metric"] == "normaliser_error"].sort_values("sequence_id")["value"].to_numpy()
    assert not np.allclose(found, l2, rtol=0.05)


def test_projections_are_drawn_once_and_handed_out_as_fresh_tensors(monkeypatch):
    """The astrocyte circuit and its nulls share each seed's W: a second request reuses the draw (the same numbers
    as drawing again), and a caller changing its tensor cannot change the next caller's."""
    from astrostats import runner

    calls = []
    original = runner.draw_projection
    monkeypatch.setattr(runner, "draw_projection", lambda *a, **k: calls.append(a) or original(*a, **k))
    monkeypatch.setattr(runner, "_DRAWN", runner.OrderedDict())
    sweep = runner.Sweep(m=(16,), n_seeds=2, base_seed=7)
    first = runner.draw_projections(sweep, "positive", 16, range(2), 4)
    first.zero_()
    again = runner.draw_projections(sweep, "positive", 16, range(2), 4)
    assert len(calls) == 2  # two seeds, drawn once each
    expected = torch.stack([original(16, 4, feature="positive", seed=runner.projection_seed(7, "positive", 16, s))
                            for s in range(2)])
    torch.testing.assert_close(again, expected, rtol=0, atol=0)
    size = 16 * 4 * 4  # bytes of one float32 projection, 16 x 4
    monkeypatch.setattr(runner, "DRAWN_BYTES", 8 * size + size // 2)  # room for 8 projections, not 9
    runner.draw_projections(sweep, "positive", 16, range(2, 9), 4)  # 7 more: 9 drawn in all
    kept = [key[3] for key in runner._DRAWN]
    assert kept == list(range(1, 9))  # the oldest (seed 0) handed back, the newest kept
