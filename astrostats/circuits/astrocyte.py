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
    POSITIVE_MAPS,
    check_projection,
    draw_projection,
    feature_parts,
)
from astrostats.validation import check_choice, check_int, fail

STREAM_CHUNK = 64  # tokens per block in streaming mode: running sums across blocks, exact within
TILE_ELEMENTS = 2**19  # rates per tile of hidden units (batch x N x tile): 2 MB of float32, about L2 size
LOG2E = 1.0 / math.log(2.0)


class CircuitOutput(NamedTuple):
    output: torch.Tensor
    log_response: torch.Tensor  # log a_t in original (unshifted) units, float64


def _shifted(exponent: torch.Tensor, oscillation: torch.Tensor | None, dims: tuple[int, ...]):
    shift = exponent.amax(dim=dims, keepdim=True).detach()
    rates = (exponent - shift).exp()
    return (rates if oscillation is None else rates * oscillation), shift


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


def _positive_circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor):
    """The non-causal circuit for the positive maps, without autograd: the same numbers as the general path
    (to float rounding), 1.1-1.8x faster on one CPU core (most at large N x m), for three reasons.

    * Exponents in base 2, log2(e) folded into q and k: torch's exp2 is about 3x faster than its exp.
    * The |x|^2/2 term is not a GEMM column: for queries it cancels in the per-token shift, for keys it is
      subtracted with the per-sequence shift (one pass), so every GEMM has the head size as inner dimension.
    * Hidden units run in tiles whose (batch x N x tile) rates stay in L2 cache. Shifts stay consistent
      across tiles: each key tile's Hebbian block is rescaled to the sequence maximum at the end; queries
      keep an online per-token maximum and rescale their running sums when it grows (as FlashAttention).
    """
    rows = projection.shape[-2]
    weights = projection.transpose(-1, -2)
    q_half, k_half = (0.5 * LOG2E * (x * x).sum(-1) for x in (q, k))  # |x|^2/2 in log2 units, (..., N)
    q, k = q * LOG2E, k * LOG2E
    batch = q.shape[:-2] if projection.dim() == 2 else torch.broadcast_shapes(q.shape[:-2], projection.shape[:-2])
    n_tokens = q.shape[-2]
    tiles = _tiles(math.prod(batch) * n_tokens, rows)
    width = tiles[0].stop - tiles[0].start
    # preallocated and reused: GEMMs writing to memory not in cache run at half speed, and fresh large
    # tensors cost page faults. Rates: one buffer for every tile; Hebbian and presynaptic: a block per tile.
    workspace = q.new_empty(math.prod(batch) * n_tokens * width)
    hebbian = q.new_empty(len(tiles), *batch, v.shape[-1], width)
    presynaptic = q.new_empty(len(tiles), *batch, width)
    key_shifts = q.new_empty(len(tiles), *batch, 1)

    def tile_views(index, tile):
        size = tile.stop - tile.start
        rates = workspace[: math.prod(batch) * n_tokens * size].view(*batch, n_tokens, size)
        return rates, hebbian[index, ..., :size], presynaptic[index, ..., :size]

    for index, tile in enumerate(tiles):  # write phase
        rates, block_hebbian, block_presynaptic = tile_views(index, tile)
        torch.matmul(k, weights[..., tile], out=rates)
        shift = torch.amax(rates.amax(-1) - k_half, -1, keepdim=True, out=key_shifts[index])  # sequence maximum
        rates.sub_((k_half + shift).unsqueeze(-1)).exp2_()
        torch.matmul(v.transpose(-1, -2), rates, out=block_hebbian)
        torch.sum(rates, -2, out=block_presynaptic)
    key_shift = key_shifts.amax(0)  # (..., 1)
    if len(tiles) > 1:  # every tile to the sequence maximum
        scales = (key_shifts - key_shift).exp2_()
        hebbian.mul_(scales.unsqueeze(-1))
        presynaptic.mul_(scales)

    response = drive = token_shift = None
    for index, tile in enumerate(tiles):  # read phase
        rates, block_hebbian, block_presynaptic = tile_views(index, tile)
        torch.matmul(q, weights[..., tile], out=rates)
        tile_max = rates.amax(-1, keepdim=True)
        if token_shift is None:
            token_shift = tile_max
        else:  # the running sums to the new per-token maximum
            new_shift = torch.maximum(token_shift, tile_max)
            rescale = (token_shift - new_shift).exp2_()
            response.mul_(rescale.squeeze(-1))
            drive.mul_(rescale)
            token_shift = new_shift
        rates.sub_(token_shift).exp2_()
        block_drive = rates @ block_hebbian.transpose(-1, -2)
        block_response = rates.mul_(block_presynaptic.unsqueeze(-2)).sum(-1)  # in place: stays in cache
        response = block_response if response is None else response.add_(block_response)
        drive = block_drive if drive is None else drive.add_(block_drive)
    # phi carries 1/sqrt(rows) on each side; shifts back to natural units
    log_shift = (token_shift.squeeze(-1).double() - q_half.double() + key_shift.double()) / LOG2E - math.log(rows)
    return response, drive, log_shift


def is_tiled(feature: str, causal: bool) -> bool:
    """Whether :func:`run_circuit` takes the tiled path, which keeps its rates in cache (without gradients)."""
    return feature in POSITIVE_MAPS and not causal


def _tiles(batch_tokens: int, rows: int) -> list[slice]:
    """Hidden units in tiles of equal width (the last may be narrower), each about TILE_ELEMENTS rates and
    at least 64 units wide."""
    count = math.ceil(rows / max(64, TILE_ELEMENTS // batch_tokens))
    width = math.ceil(rows / count)
    return [slice(start, min(rows, start + width)) for start in range(0, rows, width)]


def run_circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor,
                feature: str = "positive", causal: bool = False) -> CircuitOutput:
    """The circuit for an explicit projection W (..., rows, d) broadcasting against q's batch dims."""
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, projection))
    if is_tiled(feature, causal) and not needs_grad:
        response, drive, log_shift = _positive_circuit(q, k, v, projection)
    elif feature in POSITIVE_MAPS and not needs_grad:  # streaming, with base-2 exponents as in the tiled path
        q_exponent = _log2_rates(q, projection)
        q_shift = q_exponent.amax(-1, keepdim=True)
        phi_q = q_exponent.sub_(q_shift).exp2_()
        response, drive, key_shift = _stream(phi_q, _log2_rates(k, projection), None, v, torch.exp2)
        log_shift = (q_shift.squeeze(-1).double() + key_shift.double()) / LOG2E
    else:
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
            response, drive, key_shift = _stream(phi_q, k_exponent, k_osc, v, torch.exp)
        log_shift = q_shift.squeeze(-1).double() + key_shift.double()
    output = drive / response.unsqueeze(-1)
    return CircuitOutput(output, response.double().abs().log() + log_shift)


def _log2_rates(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """log2 phi(x) for the positive maps: log2(e) (w·x - |x|^2/2) - log2(rows)/2, one GEMM and one pass."""
    exponent = (x * LOG2E) @ projection.transpose(-1, -2)
    offset = 0.5 * LOG2E * (x * x).sum(-1, keepdim=True) + 0.5 * math.log2(projection.shape[-2])
    return exponent.sub_(offset)


def _stream(phi_q, k_exponent, k_osc, v, exp):
    """Causal write phase: H_t = H_(t-1) + v_t phi(k_t)^T, g_t = g_(t-1) + phi(k_t), read at every t.

    Runs block by block: the state carried between blocks is exactly the running sums; inside a block the
    same sums are formed with a lower-triangular mask. Key exponents are shifted per block, with the carried
    sums rescaled whenever the running maximum grows, so early tokens never underflow. ``exp`` is the base of
    the exponents (torch.exp or torch.exp2); the returned shifts are in that base.
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
            rescale = exp(running_shift - new_shift)
            hebbian, presynaptic = hebbian * rescale, presynaptic * rescale.squeeze(-1)
        running_shift = new_shift
        phi_block = exp(exponent - new_shift)
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
