"""The circuit's hand-written backward pass (astrostats.circuits.trainable) against autograd through the generic
two-phase path, which records every torch operation: the same gradients to float64 rounding, for every input, for
a W shared by a batch and for one W per head; and the route taken when a projection is trained.

Tolerance: both paths compute the same sums in float64 in different orders; at these sizes (tens of tokens and
units, logits of order 1) rounding differs by a few units of 2.2e-16 per operation, so 1e-10 relative is far above
rounding and far below any missing or wrong term (a dropped norm term or response term moves gradients by O(1)).
"""
import pytest
import torch

from astrostats.circuits import astrocyte, trainable
from astrostats.circuits.features import draw_projection
from astrostats.controls.fitted import LearnedFeatureAttention


def generic_output(q, k, v, projection, causal=False):
    response, drive, _ = astrocyte.generic_phases(q, k, v, projection, "positive", causal)
    return drive / response.unsqueeze(-1)


def inputs(batch, projection_shape, seed=0, scale=0.5):
    generator = torch.Generator().manual_seed(seed)
    q, k = (scale * torch.randn(*batch, 20, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    v = torch.randn(*batch, 20, 5, generator=generator, dtype=torch.float64)
    projection = torch.randn(*projection_shape, generator=generator, dtype=torch.float64)
    return [x.requires_grad_(True) for x in (q, k, v, projection)]


@pytest.mark.parametrize("batch, projection_shape, key_batch",
                         [((), (12, 8), None), ((3,), (12, 8), None), ((2, 3), (3, 12, 8), None),
                          ((), (12, 8), (3,)), ((3,), (12, 8), ())],
                         ids=["one sequence", "W shared by a batch", "one W per head", "keys batched, queries not",
                              "queries batched, keys not"])
def test_gradients_match_autograd_through_the_generic_path(batch, projection_shape, key_batch):
    tensors = inputs(batch, projection_shape)
    if key_batch is not None:  # keys and values of another batch shape, broadcast against the queries'
        keys = inputs(key_batch, projection_shape, seed=1)
        tensors[1], tensors[2] = keys[1], keys[2]
    expected = generic_output(*tensors)
    output, response, _ = trainable.positive_circuit(*tensors)
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=0)
    upstream = torch.randn_like(expected)
    for got, want, name in zip(torch.autograd.grad(output, tensors, upstream),
                               torch.autograd.grad(expected, tensors, upstream), ("q", "k", "v", "projection")):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12 * float(want.abs().max()), msg=name)


def test_gradcheck_against_finite_differences():
    assert torch.autograd.gradcheck(lambda *x: trainable.positive_circuit(*x)[0], inputs((2,), (6, 8), scale=0.3))


def test_a_trained_projection_takes_the_hand_written_backward(monkeypatch):
    """LearnedFeatureAttention's forward under autograd goes through trainable (not causal), and its W gets the
    generic path's gradient; without autograd the same call gives the same output (the tuned kernels)."""
    calls = []
    original = trainable.PositiveCircuit.apply
    monkeypatch.setattr(trainable.PositiveCircuit, "apply", lambda *x: calls.append(1) or original(*x))
    q, k, v, projection = (x.detach().float() for x in inputs((4,), (16, 8)))
    model = LearnedFeatureAttention(projection)
    output = model(q, k, v)
    assert calls == [1]
    output.square().sum().backward()
    reference = projection.clone().requires_grad_(True)
    generic_output(q, k, v, reference).square().sum().backward()
    torch.testing.assert_close(model.projection.grad, reference.grad, rtol=1e-4, atol=1e-6)  # float32 rounding
    with torch.no_grad():
        torch.testing.assert_close(model(q, k, v), output.detach(), rtol=1e-5, atol=1e-6)
    assert len(calls) == 1


def test_causal_training_keeps_the_generic_path(monkeypatch):
    monkeypatch.setattr(trainable.PositiveCircuit, "apply", lambda *x: pytest.fail("causal took the non-causal backward"))
    q, k, v, projection = inputs((2,), (12, 8))
    output = astrocyte.run_circuit(q, k, v, projection, causal=True).output
    torch.testing.assert_close(output, generic_output(q, k, v, projection, causal=True), rtol=1e-10, atol=0)
    output.sum().backward()
    assert torch.isfinite(projection.grad).all()


def test_an_unresolved_float32_response_is_recomputed_in_float64_with_gradients(monkeypatch):
    """At |q| = |k| = 50 float32's response underflows for some queries (the guard's NaN rows): the float64
    recomputation must run through the same backward and give W float64's gradient, finite."""
    dtypes = []
    original = trainable.PositiveCircuit.apply
    monkeypatch.setattr(trainable.PositiveCircuit, "apply", lambda *x: dtypes.append(x[0].dtype) or original(*x))
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 16, 8, generator=generator) for _ in range(2))
    q, k = (50 * x / x.norm(dim=-1, keepdim=True) for x in (q, k))
    v = torch.randn(2, 16, 4, generator=generator)
    projection = draw_projection(64, 8, seed=0)
    weights32 = projection.clone().requires_grad_(True)
    output = astrocyte.run_circuit(q, k, v, weights32).output
    assert dtypes == [torch.float32, torch.float64]
    output.sum().backward()
    weights64 = projection.double().requires_grad_(True)
    expected = generic_output(q.double(), k.double(), v.double(), weights64)
    expected.sum().backward()
    torch.testing.assert_close(output.double(), expected, rtol=1e-6, atol=1e-6 * float(v.abs().max()))  # float32 cast
    assert torch.isfinite(weights32.grad).all()
    torch.testing.assert_close(weights32.grad.double(), weights64.grad, rtol=1e-6, atol=1e-6 * float(weights64.grad.abs().max()))
