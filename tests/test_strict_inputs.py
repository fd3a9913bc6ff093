"""Strict library inputs (issue 15): bools are bools, nothing empty, no NaN from low precision, statuses that
match their numbers, p-values that are numbers, recordings without pickles."""
import numpy as np
import pandas as pd
import pytest
import torch

from astrostats.circuits.astrocyte import astrocyte_attention
from astrostats.circuits.attention import softmax_attention
from astrostats.stats import effects, multitest, resampling
from astrostats.targets.recordings import load_recordings
from astrostats.validation import InputError


def _qkv(norm: float, dtype=torch.float32, n_tokens: int = 16, d: int = 8):
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, n_tokens, d, generator=generator) for _ in range(2))
    v = torch.randn(2, n_tokens, 4, generator=generator)
    q, k = (x / x.norm(dim=-1, keepdim=True) * norm for x in (q, k))
    return q.to(dtype), k.to(dtype), v.to(dtype)


@pytest.mark.parametrize("causal", ["False", "True", 0, 1, None])
def test_causal_must_be_a_bool(causal):
    q, k, v = _qkv(1.0)
    with pytest.raises(InputError, match="causal"):
        softmax_attention(q, k, v, causal=causal)
    with pytest.raises(InputError, match="causal"):
        astrocyte_attention(q, k, v, 16, seed=0, causal=causal)


def test_return_response_must_be_a_bool():
    q, k, v = _qkv(1.0)
    with pytest.raises(InputError, match="return_response"):
        astrocyte_attention(q, k, v, 16, seed=0, return_response="no")


@pytest.mark.parametrize("shapes", [((2, 4, 8), (2, 0, 8), (2, 0, 4)),   # zero keys
                                    ((2, 0, 8), (2, 0, 8), (2, 0, 4)),   # zero tokens
                                    ((0, 4, 8), (0, 4, 8), (0, 4, 4))])  # an empty batch
def test_empty_inputs_are_errors(shapes):
    q, k, v = (torch.randn(*shape) for shape in shapes)
    with pytest.raises(InputError, match="empty"):
        softmax_attention(q, k, v)
    with pytest.raises(InputError, match="empty"):
        astrocyte_attention(q, k, v, 16, seed=0)


# float32 at 50: responses deep in float32's underflow range but not zero (3 % off unless recomputed in float64)
@pytest.mark.parametrize("dtype, norm", [(torch.float16, 10.0), (torch.bfloat16, 50.0), (torch.float32, 50.0),
                                         (torch.float32, 100.0)])
@pytest.mark.parametrize("feature", ["positive", "orthogonal"])
def test_positive_maps_never_return_nan_at_low_precision(dtype, norm, feature):
    q, k, v = _qkv(norm, dtype)
    y = astrocyte_attention(q, k, v, 64, seed=0, feature=feature)
    assert y.dtype == dtype and bool(torch.isfinite(y).all())
    # the same circuit in float64, rounded to the input's dtype: the wider computation changes no number
    reference = astrocyte_attention(q.double(), k.double(), v.double(), 64, seed=0, feature=feature)
    assert torch.allclose(y.double(), reference, atol=4 * torch.finfo(dtype).eps * float(v.abs().max()), rtol=0)


def test_logits_beyond_float64_are_a_clear_error():
    q, k, v = _qkv(2000.0, torch.float64)
    with pytest.raises(InputError, match="underflows"):
        astrocyte_attention(q, k, v, 64, seed=0)


def test_unpaired_equivalence_on_constant_data_says_zero_variance():
    result = effects.equivalence_test([1.0, 1.0, 1.0], [1.2, 1.2, 1.2], delta=0.5, paired=False)
    assert result["status"].item() == "zero_variance"
    assert result["p_value"].item() == 0.0 and bool(result["equivalent"].item())
    far = effects.equivalence_test([1.0, 1.0, 1.0], [2.0, 2.0, 2.0], delta=0.5, paired=False)
    assert far["p_value"].item() == 1.0 and not bool(far["equivalent"].item())


def test_permutation_test_at_huge_values_is_computed_not_overflowed():
    result = resampling.paired_permutation_test(np.linspace(1.0, 2.0, 20) * 1e307, seed=0)
    assert result["status"].item() == "ok"
    assert result["statistic"].item() == pytest.approx(1.5e307, rel=1e-12)
    assert result["p_value"].item() == pytest.approx(1 / 10000)  # every difference positive: only the identity
    constant = resampling.paired_permutation_test(np.full(20, 1e308), seed=0)
    assert np.isfinite(constant["statistic"].item()) and constant["status"].item() == "zero_variance"
    with pytest.raises(InputError, match="a - b"):
        resampling.paired_permutation_test([1e308] * 5, [-1e308] * 5)


@pytest.mark.parametrize("call", [
    lambda: resampling.paired_permutation_test(np.full(20, 1e308), seed=0),
    lambda: resampling.paired_permutation_test(np.linspace(-1, 1, 30) * 1e300, seed=1),
    lambda: effects.equivalence_test([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], delta=0.5, paired=False),
    lambda: resampling.two_sample_permutation_test([1e308] * 4, [1e308] * 4, seed=0),
])
def test_an_ok_status_always_sits_beside_finite_numbers(call):
    for _, row in call().iterrows():
        if row["status"] == "ok":
            assert np.isfinite(row["statistic"]) and 0 < row["p_value"] <= 1


@pytest.mark.parametrize("bad", ["abc", True, "0.01x"])
def test_adjust_p_values_rejects_non_numeric_p_values(bad):
    table = pd.DataFrame({"p_value": [0.01, bad, 0.5]})
    with pytest.raises(InputError, match="p_value"):
        multitest.adjust_p_values(table)


def test_adjust_p_values_still_excludes_missing_ones():
    adjusted = multitest.adjust_p_values(pd.DataFrame({"p_value": [0.01, None, np.nan, 0.02]}))
    assert adjusted["correction"].str.startswith("excluded").tolist() == [False, True, True, False]


class _Planted:
    def __reduce__(self):
        import os

        return (os.system, ("touch planted_pickle_ran",))


def test_recordings_npz_never_unpickles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "traces.npz"
    np.savez(path, traces=np.array([_Planted(), _Planted()], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="path"):
        load_recordings(path, 10.0)
    assert not (tmp_path / "planted_pickle_ran").exists()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_agrees_with_the_elementwise_check(dtype):
    """validation.all_finite takes a shortcut through the sum: a NaN or infinity anywhere is caught, and finite
    entries whose sum overflows (the dtype's largest value, many times) are still finite."""
    from astrostats.validation import all_finite

    largest = torch.finfo(dtype).max
    cases = [torch.zeros(0, dtype=dtype), torch.randn(3, 17, 5).to(dtype), torch.full((64,), largest, dtype=dtype),
             torch.tensor([largest, -largest, largest], dtype=dtype)]
    for bad in (float("nan"), float("inf"), -float("inf")):
        for position in (0, 41, 84):
            tensor = torch.randn(85).to(dtype)
            tensor[position] = bad
            cases += [tensor, tensor.reshape(5, 17).t()]  # contiguous and not
    for tensor in cases:
        assert all_finite(tensor) == bool(torch.isfinite(tensor).all()), tensor
    assert all_finite(torch.randn(4, requires_grad=True))
    # a circuit's result: a tuple (or list) of tensors, anything else inside it not a tensor to check
    assert all_finite((torch.ones(3), [torch.zeros(2), None])) and all_finite(None)
    assert not all_finite((torch.ones(3), [torch.tensor([1.0, float("nan")])]))
