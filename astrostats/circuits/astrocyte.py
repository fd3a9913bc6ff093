"""The neuron–astrocyte circuit of Kozachkov, Kastanenka & Krotov (PNAS 2023), one head, batched.

Two phases, as in the paper (paper-notes.md), with phi the hidden neurons' rates (astrostats.circuits.features):

* write (tokens arrive): Hebbian hidden->output synapses H = sum_tau v_tau phi(k_tau)^T and presynaptic
  neuron->astrocyte couplings g = sum_tau phi(k_tau) (:func:`write_phase`); in causal mode these are running
  sums, H_t = H_(t-1) + v_t phi(k_t)^T and g_t = g_(t-1) + phi(k_t), read after token t is written;
* read (query t): astrocyte response a_t = g·phi(q_t), and the astrocyte divides the synaptic output,
  y_t = H phi(q_t) / a_t (:func:`read_phase`).

:func:`reference_circuit` is exactly that, in float64, in a dozen lines: the definition every fast path is
tested against. :func:`run_circuit` computes the same numbers for real work: exponents shifted by a per-sequence
maximum (keys) and a per-token maximum (queries), which multiply numerator and denominator alike and cancel in
y_t (the returned response a_t is shifted back, in float64, so it can be set against the exact normaliser
sum_tau exp(q_t·k_tau)); the positive maps take the tuned kernels of :mod:`astrostats.circuits.kernels`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from astrostats.circuits import kernels, trainable
from astrostats.circuits.attention import check_qkv
from astrostats.circuits.finite import finite_result
from astrostats.circuits.features import (
    FEATURE_MAPS,
    POSITIVE_MAPS,
    check_projection,
    draw_projection,
    feature_parts,
    random_features,
)
from astrostats.validation import all_finite, check_bool, check_choice, check_int, fail


class CircuitOutput(NamedTuple):
    output: torch.Tensor
    log_response: torch.Tensor  # log a_t in original (unshifted) units, float64


def write_phase(phi_k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hebbian H (..., d_v, m) and presynaptic g (..., m) from a block of tokens."""
    hebbian = v.transpose(-1, -2) @ phi_k
    presynaptic = phi_k.sum(-2)
    return hebbian, presynaptic


def read_phase(hebbian: torch.Tensor, presynaptic: torch.Tensor, phi_q: torch.Tensor):
    """Astrocyte response a_t = g·phi(q_t) and synaptic drive H phi(q_t), for every query t."""
    response = (phi_q * presynaptic.unsqueeze(-2)).sum(-1)  # not a matmul: batched GEMV is 8x slower in torch
    drive = phi_q @ hebbian.transpose(-1, -2)
    return response, drive


def reference_circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor,
                      feature: str = "positive", causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's circuit as written, in float64, without shifts or tiles: (y, a). For tests and reading;
    it overflows where |w·x| nears 700, which :func:`run_circuit` does not."""
    q, k, v, projection = (x.double() for x in (q, k, v, projection))
    phi_q, phi_k = random_features(q, projection, feature), random_features(k, projection, feature)
    if not causal:
        hebbian, presynaptic = write_phase(phi_k, v)
        response, drive = read_phase(hebbian, presynaptic, phi_q)
    else:  # token by token: write token t into the running sums, then read query t
        hebbian = torch.zeros(*v.shape[:-2], v.shape[-1], phi_k.shape[-1], dtype=torch.float64)
        presynaptic, responses, drives = torch.zeros_like(phi_k[..., 0, :]), [], []
        for t in range(k.shape[-2]):
            block_hebbian, block_presynaptic = write_phase(phi_k[..., t:t + 1, :], v[..., t:t + 1, :])
            hebbian, presynaptic = hebbian + block_hebbian, presynaptic + block_presynaptic
            response, drive = read_phase(hebbian, presynaptic, phi_q[..., t:t + 1, :])
            responses.append(response)
            drives.append(drive)
        response, drive = torch.cat(responses, -1), torch.cat(drives, -2)
    return drive / response.unsqueeze(-1), response


def _shifted(exponent: torch.Tensor, oscillation: torch.Tensor | None, dims: tuple[int, ...]):
    shift = exponent.amax(dim=dims, keepdim=True).detach()
    rates = (exponent - shift).exp()
    return (rates if oscillation is None else rates * oscillation), shift


def run_circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor,
                feature: str = "positive", causal: bool = False) -> CircuitOutput:
    """The circuit for an explicit projection W (..., rows, d) broadcasting against q's batch dims.

    Without autograd the positive maps take the tuned kernels and the paired maps the tiled one when not
    causal; with autograd, the positive maps when not causal a hand-written backward (:mod:`.trainable`); every
    other case runs the two phases on shifted rates (causal: streamed in blocks of running sums).
    Finite or an InputError (:mod:`astrostats.circuits.finite`): half precision computed in float32, a non-finite
    result again in float64, mixed dtypes promoted; the output returns in the inputs' common dtype."""
    return finite_result("run_circuit", lambda *x: _circuit(*x, feature, causal), (q, k, v, projection),
                         lambda result, dtype: CircuitOutput(result.output.to(dtype), result.log_response))


def _circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, feature: str,
             causal: bool) -> CircuitOutput:
    """:func:`run_circuit` on inputs of one dtype, unguarded (callers guard the result)."""
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, projection))
    if feature in POSITIVE_MAPS and not causal and needs_grad:  # training W: circuits.trainable's backward
        output, response, log_shift = trainable.positive_circuit(q, k, v, projection)
    else:
        if feature in POSITIVE_MAPS and not needs_grad:
            response, drive, log_shift = kernels.positive_circuit(q, k, v, projection, causal)
        elif not causal and not needs_grad:
            response, drive, log_shift = kernels.tiled_paired(q, k, v, projection, feature)
        else:
            response, drive, log_shift = generic_phases(q, k, v, projection, feature, causal)
        output = drive / response.unsqueeze(-1)
    if feature in POSITIVE_MAPS:
        output = _unresolved_as_nan(output, response, summed_terms=projection.shape[-2] * k.shape[-2])
    return CircuitOutput(output, response.double().abs().log() + log_shift)


def generic_phases(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, feature: str,
                   causal: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(response, drive, log shift) by the two phases on shifted rates, in torch operations autograd can follow
    (causal: streamed in blocks of running sums): every map, every mode; what the faster paths are checked
    against."""
    phi_q, q_shift = _shifted(*feature_parts(q, projection, feature), (-1,))
    if not causal:
        phi_k, k_shift = _shifted(*feature_parts(k, projection, feature), (-2, -1))
        hebbian, presynaptic = write_phase(phi_k, v)
        response, drive = read_phase(hebbian, presynaptic, phi_q)
        key_shift = k_shift.squeeze(-1)
    else:
        k_exponent, k_osc = feature_parts(k, projection, feature)
        if k_exponent.shape[-1] == 1 and k_osc is not None:
            k_exponent = k_exponent.expand_as(k_osc)
        response, drive, key_shift = kernels.stream(phi_q, k_exponent, k_osc, v, torch.exp)
    return response, drive, q_shift.squeeze(-1).double() + key_shift.double()


def _unresolved_as_nan(output: torch.Tensor, response: torch.Tensor, summed_terms: int) -> torch.Tensor:
    """The output with NaN rows where the positive maps' response lies so deep in its dtype's underflow range
    that rounding, not the circuit, sets the read-out, so that the callers' guard recomputes it in float64.

    Why: the response is a sum of ``summed_terms`` positive products (hidden units x keys) of shifted rates; each
    product that underflows loses at most the dtype's smallest normal number (flush to zero). Summed, that loss
    stays within one rounding unit of the response as long as response >= summed_terms * tiny / eps; below it a
    finite but wrong read-out (float32 at logits of thousands: 3 % off) would pass as exact."""
    info = torch.finfo(response.dtype)
    floor = summed_terms * info.tiny / info.eps
    unresolved = response.abs() < floor
    return output.masked_fill(unresolved.unsqueeze(-1), float("nan")) if bool(unresolved.any()) else output


def astrocyte_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int | None = None, *,
                        projection: torch.Tensor | None = None, feature: str = "positive",
                        seed: int | None = None, causal: bool = False, return_response: bool = False):
    """Neuron–astrocyte attention y_t = H phi(q_t) / (g·phi(q_t)).

    Exactly one of (m and seed) or projection defines the hidden units. With ``return_response`` the
    astrocyte response a_t (float64, original units) is returned too: ``(y, a)``. Never a silent NaN:
    half-precision inputs (float16, bfloat16) are computed in float32, a response that underflows to zero
    (logits of hundreds) is recomputed in float64, and beyond that the error says so; y returns in q's dtype.
    """
    check_qkv(q, k, v, causal)
    check_bool("return_response", return_response)
    first = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    for dtype in dict.fromkeys((first, torch.float64)):
        y, a = _astrocyte_attention(q.to(dtype), k.to(dtype), v.to(dtype), m, projection, feature, seed, causal)
        if all_finite(y):
            return (y.to(q.dtype), a) if return_response else y.to(q.dtype)
    largest = float((q.double() @ k.double().transpose(-1, -2)).abs().max())
    raise fail("q, k", "logits whose exponentials float64 can hold (the astrocyte response underflows to zero)",
               f"max |q.k| = {largest:.4g}")


def hidden_units(q: torch.Tensor, m: int | None, projection: torch.Tensor | None, feature: str,
                 seed: int | None) -> torch.Tensor:
    """The projection W in q's dtype, from (m, seed) or given (exactly one of the two), checked; shared by every
    circuit with random hidden units so that all take and check it alike."""
    check_choice("feature", feature, FEATURE_MAPS)
    if projection is None:
        if m is None or seed is None:
            raise fail("m, seed", "both m and seed (or an explicit projection)", (m, seed))
        m = check_int("m", m, minimum=1)
        seed = check_int("seed", seed, minimum=0)
        projection = draw_projection(m, q.shape[-1], feature=feature, seed=seed, dtype=q.dtype)
    elif m is not None or seed is not None:
        raise fail("projection", "either a projection or m and seed, not both", (m, seed))
    return check_projection(projection, q.shape[-1]).to(q.dtype)


def _astrocyte_attention(q, k, v, m, projection, feature, seed, causal):
    """The circuit on checked inputs: (output, astrocyte response)."""
    result = _circuit(q, k, v, hidden_units(q, m, projection, feature, seed), feature, causal)
    return result.output, result.log_response.exp()
