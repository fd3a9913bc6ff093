"""The neuron–astrocyte circuit of Kozachkov, Kastanenka & Krotov (PNAS 2023), one head, batched.

Two phases, as in the paper:

* write (tokens arrive): Hebbian hidden->output synapses H = sum_tau v_tau phi(k_tau)^T and presynaptic
  neuron->astrocyte couplings g = sum_tau phi(k_tau);
* read (query t): astrocyte response a_t = g·phi(q_t), and the astrocyte divides the synaptic output,
  y_t = H phi(q_t) / a_t.

Exponents are shifted by a per-sequence maximum (keys) and a per-token maximum (queries). Both shifts
multiply numerator and denominator alike and cancel in y_t; the returned response a_t is shifted back
(in float64) so it can be set against the exact normaliser sum_tau exp(q_t·k_tau).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from astrostats.circuits.attention import check_qkv
from astrostats.circuits.features import (
    FEATURE_MAPS,
    check_projection,
    draw_projection,
    feature_parts,
)
from astrostats.validation import check_choice, check_int, fail

STREAM_CHUNK = 64  # tokens per block in streaming mode: running sums across blocks, exact within


class CircuitOutput(NamedTuple):
    output: torch.Tensor
    log_response: torch.Tensor  # log a_t in original (unshifted) units, float64


def _shifted(exponent: torch.Tensor, oscillation: torch.Tensor | None, dims: tuple[int, ...]):
    shift = exponent.amax(dim=dims, keepdim=True).detach()
    rates = (exponent - shift).exp()
    return (rates if oscillation is None else rates * oscillation), shift


def write_phase(phi_k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hebbian H (..., d_v, m) and presynaptic g (..., m) from a block of tokens."""
    hebbian = torch.einsum("...nv,...nm->...vm", v, phi_k)
    presynaptic = phi_k.sum(-2)
    return hebbian, presynaptic


def read_phase(hebbian: torch.Tensor, presynaptic: torch.Tensor, phi_q: torch.Tensor):
    """Astrocyte response a_t = g·phi(q_t) and synaptic drive H phi(q_t), for every query t."""
    response = phi_q @ presynaptic.unsqueeze(-1)
    drive = torch.einsum("...vm,...tm->...tv", hebbian, phi_q)
    return response.squeeze(-1), drive


def _positive_rates_in_place(x: torch.Tensor, projection: torch.Tensor, dims: tuple[int, ...]):
    """phi(x) shifted by its maximum over ``dims``, for the positive maps, without autograd: one GEMM with
    -|x|^2/2 folded in as an extra column, then shift and exp in place (the same numbers as
    ``_shifted(feature_parts(...))`` with about half the memory traffic)."""
    half_norm = 0.5 * (x * x).sum(-1, keepdim=True)
    augmented_x = torch.cat([x, -half_norm], -1)
    augmented_w = torch.cat([projection, projection.new_ones(*projection.shape[:-1], 1)], -1)
    exponent = augmented_x @ augmented_w.transpose(-1, -2)  # w·x - |x|^2/2
    shift = exponent.amax(dim=dims, keepdim=True)
    return exponent.sub_(shift).exp_(), shift - 0.5 * math.log(projection.shape[-2])


def _rates(x, projection, feature, dims):
    """Shifted hidden-unit rates and the shift, by the fast path where it applies."""
    fast = feature in ("positive", "orthogonal") and not (
        torch.is_grad_enabled() and (x.requires_grad or projection.requires_grad))
    if fast:
        return _positive_rates_in_place(x, projection, dims)
    return _shifted(*feature_parts(x, projection, feature), dims)


def run_circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor,
                feature: str = "positive", causal: bool = False) -> CircuitOutput:
    """The circuit for an explicit projection W (..., rows, d) broadcasting against q's batch dims."""
    phi_q, q_shift = _rates(q, projection, feature, (-1,))
    if not causal:
        phi_k, k_shift = _rates(k, projection, feature, (-2, -1))
        hebbian, presynaptic = write_phase(phi_k, v)
        response, drive = read_phase(hebbian, presynaptic, phi_q)
        key_shift = k_shift.squeeze(-1)
    else:
        k_exponent, k_osc = feature_parts(k, projection, feature)
        if k_exponent.shape[-1] == 1 and k_osc is not None:
            k_exponent = k_exponent.expand_as(k_osc)
        response, drive, key_shift = _stream(phi_q, k_exponent, k_osc, v)
    output = drive / response.unsqueeze(-1)
    log_response = response.double().abs().log() + q_shift.squeeze(-1).double() + key_shift.double()
    return CircuitOutput(output, log_response)


def _stream(phi_q, k_exponent, k_osc, v):
    """Causal write phase: H_t = H_(t-1) + v_t phi(k_t)^T, g_t = g_(t-1) + phi(k_t), read at every t.

    Runs block by block: the state carried between blocks is exactly the running sums; inside a block the
    same sums are formed with a lower-triangular mask. Key exponents are shifted per block, with the carried
    sums rescaled whenever the running maximum grows, so early tokens never underflow.
    """
    n = k_exponent.shape[-2]
    batch = k_exponent.shape[:-2]
    m = k_exponent.shape[-1]
    hebbian = torch.zeros(*batch, v.shape[-1], m, dtype=phi_q.dtype)
    presynaptic = torch.zeros(*batch, m, dtype=phi_q.dtype)
    running_shift = None
    responses, drives, shifts = [], [], []
    for start in range(0, n, STREAM_CHUNK):
        block = slice(start, min(n, start + STREAM_CHUNK))
        exponent = k_exponent[..., block, :]
        block_shift = exponent.amax(dim=(-2, -1), keepdim=True)
        new_shift = block_shift if running_shift is None else torch.maximum(running_shift, block_shift)
        if running_shift is not None:  # rescale the carried sums to the new reference
            rescale = (running_shift - new_shift).exp()
            hebbian, presynaptic = hebbian * rescale, presynaptic * rescale.squeeze(-1)
        running_shift = new_shift
        phi_block = (exponent - new_shift).exp()
        if k_osc is not None:
            phi_block = phi_block * k_osc[..., block, :]
        q_block = phi_q[..., block, :]
        v_block = v[..., block, :]
        # read: what the carried running sums give, plus this block's tokens up to and including t
        within = torch.tril(q_block @ phi_block.transpose(-1, -2))
        carried_response, carried_drive = read_phase(hebbian, presynaptic, q_block)
        responses.append(carried_response + within.sum(-1))
        drives.append(carried_drive + within @ v_block)
        shifts.append(new_shift[..., 0, 0, None].expand(*new_shift.shape[:-2], block.stop - block.start))
        # write: fold this block into the running sums
        block_hebbian, block_presynaptic = write_phase(phi_block, v_block)
        hebbian, presynaptic = hebbian + block_hebbian, presynaptic + block_presynaptic
    return torch.cat(responses, -1), torch.cat(drives, -2), torch.cat(shifts, -1)


def astrocyte_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int | None = None, *,
                        projection: torch.Tensor | None = None, feature: str = "positive",
                        seed: int | None = None, causal: bool = False, return_response: bool = False):
    """Neuron–astrocyte attention y_t = H phi(q_t) / (g·phi(q_t)).

    Exactly one of (m and seed) or projection defines the hidden units. With ``return_response`` the
    astrocyte response a_t (float64, original units) is returned too: ``(y, a)``.
    """
    check_qkv(q, k, v, causal)
    check_choice("feature", feature, FEATURE_MAPS)
    if projection is None:
        if m is None or seed is None:
            raise fail("m, seed", "both m and seed (or an explicit projection)", (m, seed))
        m = check_int("m", m, minimum=1)
        seed = check_int("seed", seed, minimum=0)
        projection = draw_projection(m, q.shape[-1], feature=feature, seed=seed, dtype=q.dtype)
    elif m is not None or seed is not None:
        raise fail("projection", "either a projection or m and seed, not both", (m, seed))
    check_projection(projection, q.shape[-1])
    result = run_circuit(q, k, v, projection.to(q.dtype), feature, causal)
    if return_response:
        return result.output, result.log_response.exp()
    return result.output
