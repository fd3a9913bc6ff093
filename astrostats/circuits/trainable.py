"""The positive-map circuit with a hand-written backward pass, for training a projection W.

Why: fitting the learned-feature control (astrostats.controls.fitted) is much of the overfitting analysis, and
autograd through the circuit's generic path records every elementwise step (the projection, the norm
subtraction, the shift, exp, the response's broadcast product) and replays each backwards over the (tokens x
hidden units) rates. Here the forward keeps only the two rate matrices, and the backward is five GEMMs and two
elementwise products: a training step 1.2-1.5x faster (benchmarks/README.md, "Training the learned-feature
control").

    rates    Pq = exp(Eq - shift_q),  Pk = exp(Ek - shift_k),  E = X W^T - |x|^2 / 2 - log(m) / 2
    write    S = [V, 1]^T Pk            (the Hebbian synapses H and, as the last row, the couplings g)
    read     [D, r] = Pq S^T,  Y = D / r
    back     [dD, dr] = [dY / r, -sum(dY * Y) / r]
             dPq = [dD, dr] S,  dS = [dD, dr]^T Pq,  dPk = [V, 1] dS
             dEq = dPq * Pq,  dEk = dPk * Pk
             dW = dEq^T Q + dEk^T K,  dQ = dEq W,  dK = dEk W - sum(dEk) K,  dV = Pk dH^T

(dQ has no norm term: Y is invariant to scaling a query's rates, so each row of dEq sums to zero.)

The shifts (a per-token maximum for queries, a per-sequence maximum for keys) cancel in Y exactly, so they carry
no gradient, as on the generic path, which detaches them. Not causal: a causal head's running sums take the
generic path. Tested against autograd on the generic path in float64 (tests/test_trainable_circuit.py).
"""
from __future__ import annotations

import math

import torch

from astrostats.circuits.kernels import LOG2E, row_maxima, shifted_exp2_


def _rates(x: torch.Tensor, projection: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """exp(E - max E) over ``dims`` and that maximum, E = x W^T - |x|^2 / 2 - log(rows) / 2; computed in base 2
    as the circuit's kernels do, in two passes over the rates after the GEMM (row maxima, then the shifted exp2)."""
    exponent = (x * LOG2E) @ projection.transpose(-1, -2)  # (..., N, m), log2 units
    norm = LOG2E * (0.5 * (x * x).sum(-1) + 0.5 * math.log(projection.shape[-2]))  # (..., N)
    shift = row_maxima(exponent) - norm
    if len(dims) == 2:  # keys: one shift per sequence
        shift = shift.amax(-1, keepdim=True)
    return shifted_exp2_(exponent, norm + shift), shift.unsqueeze(-1) * math.log(2.0)


class PositiveCircuit(torch.autograd.Function):
    """(output Y, response r, log shift) of the non-causal positive-map circuit; Y alone carries gradients."""

    @staticmethod
    def forward(ctx, q, k, v, projection):
        rates_q, shift_q = _rates(q, projection, (-1,))
        rates_k, shift_k = _rates(k, projection, (-2, -1))
        values_and_one = torch.cat([v, torch.ones_like(v[..., :1])], -1)
        synapses = values_and_one.transpose(-1, -2) @ rates_k  # (..., d_v + 1, m): H, then g
        read = rates_q @ synapses.transpose(-1, -2)  # (..., N, d_v + 1): the drive D, then the response r
        response = read[..., -1]
        output = read[..., :-1] / response.unsqueeze(-1)
        ctx.save_for_backward(q, k, projection, rates_q, rates_k, values_and_one, synapses, response, output)
        ctx.v_shape = v.shape
        log_shift = shift_q.squeeze(-1).double() + shift_k.squeeze(-1).double()
        ctx.mark_non_differentiable(response, log_shift)
        return output, response, log_shift

    @staticmethod
    @torch.autograd.function.once_differentiable  # the saved rates are constants here: no second derivatives
    def backward(ctx, grad_output, _grad_response, _grad_shift):
        q, k, projection, rates_q, rates_k, values_and_one, synapses, response, output = ctx.saved_tensors
        grad_read = torch.cat([grad_output, -(grad_output * output).sum(-1, keepdim=True)], -1)
        grad_read /= response.unsqueeze(-1)
        grad_synapses = grad_read.transpose(-1, -2) @ rates_q
        grad_q_exponent = (grad_read @ synapses).mul_(rates_q)
        grad_k_exponent = (values_and_one @ grad_synapses).mul_(rates_k)
        needs_q, needs_k, needs_v, needs_projection = ctx.needs_input_grad
        grad_q = grad_k = grad_v = grad_projection = None
        if needs_q:  # no -sum(dEq) q term: Y is invariant to scaling phi(q_t), so each row of dEq sums to 0
            grad_q = _sum_to(grad_q_exponent @ projection, q.shape)
        if needs_k:
            grad_k = _sum_to(grad_k_exponent @ projection - grad_k_exponent.sum(-1, keepdim=True) * k, k.shape)
        if needs_v:
            grad_v = _sum_to(rates_k @ grad_synapses[..., :-1, :].transpose(-1, -2), ctx.v_shape)
        if needs_projection:
            grad_projection = _sum_to(_outer(grad_q_exponent, q, projection) + _outer(grad_k_exponent, k, projection),
                                      projection.shape)
        return grad_q, grad_k, grad_v, grad_projection


def _outer(grad_exponent: torch.Tensor, x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """grad_exponent^T x summed over tokens; for one W shared by a batch (2-D), over the batch too, in one GEMM
    (x broadcast to the batch first: q and k may differ in batch shape)."""
    if projection.dim() == 2:
        x = x.expand(*grad_exponent.shape[:-1], x.shape[-1])
        return grad_exponent.reshape(-1, grad_exponent.shape[-1]).transpose(0, 1) @ x.reshape(-1, x.shape[-1])
    return grad_exponent.transpose(-1, -2) @ x


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return grad if grad.shape == shape else grad.sum_to_size(shape)


def positive_circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output, response, log shift) as the circuit's kernels return them; the output is differentiable in every
    input (once), the response and the shift carry no gradient."""
    return PositiveCircuit.apply(q, k, v, projection)
