"""Tuned kernels of the neuron–astrocyte circuit: the same numbers as the paper's two phases
(:func:`astrostats.circuits.astrocyte.reference_circuit`, to float rounding), computed fast.

Nothing here changes what is computed, only how: exponents in base 2 (torch's exp2 is about 3x faster than its
exp on a CPU), hidden units in tiles that stay in cache, per-tile key shifts rescaled to the sequence maximum,
online per-token query shifts (as FlashAttention), and causal streaming in blocks with running sums. Tests bind
every path here (each feature map, causal or not, uneven tiles, float32 and float64) to the reference.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from astrostats.circuits import native
from astrostats.circuits.features import POSITIVE_MAPS, feature_parts

STREAM_CHUNK = 64  # tokens per block in streaming mode: running sums across blocks, exact within
# rates per tile of hidden units (batch x N x tile): 16 MB of float32. Fixed, not fitted to the machine's caches,
# so that a spec gives the same tables on every machine (the tile sets the float32 summation order). Why this size:
# each tile's fixed costs (its GEMM calls, shift bookkeeping, the transposed read-out) shrink with fewer, wider
# tiles while a tile stays in the last-level cache. Measured on 2 cores (480 MB shared L3): 16 MB tiles ran
# fig3_language (MiniLM and SmolLM2 heads at m = 1e5) 11 % faster than 4 MB ones; `benchmarks/run.py --only
# circuit` puts the circuit at 0.58-0.59 of a same-run matmul on one thread and 0.54-0.57 on two (4 MB: 0.55 and
# 0.47-0.49); 32 MB tiles were slower than 4 MB at m = 16,384.
TILE_ELEMENTS = 2**22
LOG2E = 1.0 / math.log(2.0)
TOKEN_PAIR_RATIO = {False: 1, True: 3}  # token-pair sums up to N = ratio x (2 d + 1) tokens, by causal


def positive_circuit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, causal: bool):
    """Response, drive and the log shift (natural units) of the positive maps without autograd: through the
    token-pair sums when sequences are short (:func:`uses_token_pairs`) and queries and keys equally many (its
    buffers are square), else tiled when not causal and streamed in base 2 when causal."""
    if q.shape[-2] == k.shape[-2] and uses_token_pairs(q.shape[-2], q.shape[-1], causal):
        return token_pair_positive(q, k, v, projection, causal)
    return tiled_positive(q, k, v, projection) if not causal else streamed_positive(q, k, v, projection)


def uses_token_pairs(n_tokens: int, d: int, causal: bool) -> bool:
    """Whether :func:`token_pair_positive` serves sequences of ``n_tokens`` with head size ``d``: its GEMMs
    cost 2 N^2 flops per hidden unit against the Hebbian route's 2 N (2 d + 1), the same at N = 2 d + 1.
    Measured on one core (float32, m = 30,000, 8 sequences, both routes in their fused compiled passes): as fast
    as the Hebbian route at N = 2 d + 1 (time ratio 1.02 at d = 32, 1.04 at d = 64), slower from 1.5 (2 d + 1)
    (1.11, 1.22) when not causal; causal, against the streamed route, 2-4x faster up to 3 (2 d + 1) (time ratio
    0.23-0.53). Before the fused passes (torch GEMMs) the same bounds held: 1.2-1.4x faster up to 2 d + 1."""
    return n_tokens <= TOKEN_PAIR_RATIO[causal] * (2 * d + 1)


def token_pair_positive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor,
                        causal: bool):
    """The circuit for the positive maps through its token-pair sums, causal or not, without autograd.

    The read of token t is  g·phi(q_t) = sum_s P_ts  and  H phi(q_t) = sum_s P_ts v_s  with
    P_ts = phi(q_t)·phi(k_s) = sum_j phi_j(q_t) phi_j(k_s): the same sums over hidden units and tokens as the
    Hebbian write and read, taken in the other order (float rounding aside), which for short sequences is
    the cheaper order. Hidden units run in tiles; each tile's rates are shifted by a running per-token
    maximum on both sides (query and key), and P's accumulated rows and columns are rescaled when a maximum
    grows, so every rate is at most 1 and nothing overflows. Causal: P's upper triangle is dropped and each
    token's keys are rescaled to the maximum over its own prefix, so early tokens never underflow.
    """
    rows = projection.shape[-2]
    batch = batch_shape(q, projection)
    n_tokens = q.shape[-2]
    q_half, k_half = (0.5 * LOG2E * (x * x).sum(-1) for x in (q, k))  # |x|^2/2 in log2 units, (..., N)
    if native.fused_available(q, k, projection):
        shapes = tuple(tuple(x.shape[:-2]) for x in (q, k, projection))
        pairs, shifts = native.fused_pairs(*(x.reshape(-1, *x.shape[-2:]).contiguous() for x in (q, k, projection)),
                                           _batch_elements(shapes), causal)
        shifts = shifts.view(2, *batch, n_tokens)
    else:
        pairs, shifts = _token_pairs(q * LOG2E, k * LOG2E, projection, batch)
    pairs = pairs.view(*batch, n_tokens, n_tokens)
    key_scale = shifts[1] - k_half  # log2 of each key's rate scale
    if causal:
        pairs.tril_()
        reference = torch.cummax(key_scale, -1).values  # each token's maximum over its own prefix
    else:
        reference = key_scale.amax(-1, keepdim=True).expand_as(key_scale)
    # keys to each token's reference (clamped: the dropped upper triangle must not overflow to inf * 0)
    pairs.mul_((key_scale.unsqueeze(-2) - reference.unsqueeze(-1)).clamp_(max=0.0).exp2_())
    response, drive = pairs.sum(-1), pairs @ v
    log_shift = (shifts[0].double() - q_half.double() + reference.double()) / LOG2E - math.log(rows)
    return response, drive, log_shift


def _token_pairs(q: torch.Tensor, k: torch.Tensor, projection: torch.Tensor, batch: torch.Size):
    """The token-pair sums in torch (with the compiled row pass where it serves): (pairs (B, N, N), the running
    maxima of the queries' and keys' exponents (2, *batch, N)), q and k already in log2 units. Where the fused
    pass serves (:func:`native.fused_pairs`) it computes the same in one call."""
    rows, n_tokens = projection.shape[-2], q.shape[-2]
    weights = projection.transpose(-1, -2)
    tiles = tiles_of(2 * math.prod(batch) * n_tokens, rows)  # two tiles of rates at once: queries and keys
    width = tiles[0].stop - tiles[0].start
    workspace = q.new_empty(2, math.prod(batch) * n_tokens * width)
    pairs = q.new_zeros(math.prod(batch), n_tokens, n_tokens)
    shifts = q.new_full((2, *batch, n_tokens), -math.inf)  # running row maxima of the raw exponents, base 2
    fast = native.available(q)
    for index, tile in enumerate(tiles):
        size = tile.stop - tile.start
        rates = [workspace[side, : math.prod(batch) * n_tokens * size].view(*batch, n_tokens, size)
                 for side in range(2)]
        before = shifts.clone()
        for side, x in enumerate((q, k)):
            torch.matmul(x, weights[..., tile], out=rates[side])
            if fast:
                native.exp2_online_(rates[side], shifts[side])
            else:
                torch.maximum(shifts[side], rates[side].amax(-1), out=shifts[side])
                rates[side].sub_(shifts[side].unsqueeze(-1)).exp2_()
        if index:  # the accumulated pairs to the grown maxima: rows (queries) and columns (keys)
            rescale = (before - shifts).exp2_().reshape(2, -1, n_tokens)
            pairs.mul_(rescale[0].unsqueeze(-1)).mul_(rescale[1].unsqueeze(-2))
        pairs.baddbmm_(rates[0].reshape(-1, n_tokens, size), rates[1].reshape(-1, n_tokens, size).transpose(-1, -2))
    return pairs, shifts


def streamed_positive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor):
    """The causal circuit for the positive maps: :func:`stream` on tiles of hidden units, whose results are
    merged with per-token shifts (the units' sums are independent, so tiles add up exactly). Why tiles: a causal
    head at m = 1e5 streamed (batch x N x m) exponents, 80 MB a sequence, through memory at 5x the matmul floor;
    a tile's stay in cache."""
    rows = projection.shape[-2]
    batch = batch_shape(q, projection)
    response = drive = total_shift = None
    for tile in tiles_of(math.prod(batch) * q.shape[-2], rows):
        part = projection[..., tile, :]
        q_exponent = log2_rates(q, part, rows)
        q_shift = q_exponent.amax(-1, keepdim=True)
        phi_q = q_exponent.sub_(q_shift).exp2_()
        block_response, block_drive, key_shift = stream(phi_q, log2_rates(k, part, rows), None, v, torch.exp2)
        shift = q_shift.squeeze(-1).double() + key_shift.double()  # (..., N), base 2
        if response is None:
            response, drive, total_shift = block_response, block_drive, shift
            continue
        new_shift = torch.maximum(total_shift, shift)
        old_scale, new_scale = (total_shift - new_shift).exp2().to(q.dtype), (shift - new_shift).exp2().to(q.dtype)
        response = response * old_scale + block_response * new_scale
        drive = drive * old_scale.unsqueeze(-1) + block_drive * new_scale.unsqueeze(-1)
        total_shift = new_shift
    return response, drive, total_shift / LOG2E


def tiled_positive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor):
    """The non-causal circuit for the positive maps, without autograd: the same numbers as the reference
    (to float rounding). Where the fused compiled pass serves (float32, AVX-512, value size 16 to 64) it computes
    everything (:func:`fused_positive`); elsewhere torch's GEMMs do, about 70 % of the time, for four reasons.

    * Exponents in base 2, log2(e) folded into q and k: exp2 is about 3x faster than exp. In float32 a
      compiled pass (:mod:`astrostats.circuits.native`) shifts a tile's rows and takes their exp2 while each
      row is in L1 cache; elsewhere torch's amax, sub and exp2 do it in three passes.
    * The |x|^2/2 term is not a GEMM column: for queries it cancels in the per-token shift, for keys it is
      subtracted with the per-sequence shift (one pass), so every GEMM has the head size as inner dimension.
    * The values carry a column of ones, so the presynaptic sums g are the Hebbian GEMM's last row; the
      compiled pass forms the astrocyte response (a row's dot product with g) while it takes the exp2.
    * Hidden units run in tiles whose (batch x N x tile) rates stay in L2 cache. Shifts stay consistent
      across tiles: each key tile's share of the read is rescaled to the sequence maximum; queries
      keep an online per-token maximum and rescale their running sums when it grows (as FlashAttention).
    """
    if native.fused_available(q, k, v, projection, value_size=v.shape[-1]):
        return fused_positive(q, k, v, projection)
    rows = projection.shape[-2]
    weights = projection.transpose(-1, -2)
    q_half, k_half = (0.5 * LOG2E * (x * x).sum(-1) for x in (q, k))  # |x|^2/2 in log2 units, (..., N)
    q, k = q * LOG2E, k * LOG2E
    values = torch.cat([v, v.new_ones(*v.shape[:-1], 1)], -1).transpose(-1, -2).contiguous()  # (..., d_v + 1, N)
    batch = batch_shape(q, projection)
    n_tokens, n_keys = q.shape[-2], k.shape[-2]
    tiles = tiles_of(math.prod(batch) * max(n_tokens, n_keys), rows)
    width = tiles[0].stop - tiles[0].start
    # preallocated and reused: GEMMs writing to memory not in cache run at half speed, and fresh large
    # tensors cost page faults. Rates: one buffer for every tile; Hebbian (with g as last row): a block per tile.
    workspace = q.new_empty(math.prod(batch) * max(n_tokens, n_keys) * width)
    hebbian = q.new_empty(len(tiles), *batch, values.shape[-2], width)
    key_shifts = q.new_empty(len(tiles), *batch, 1)
    fast = native.available(q)

    def tile_views(index, tile, tokens):
        size = tile.stop - tile.start
        rates = workspace[: math.prod(batch) * tokens * size].view(*batch, tokens, size)
        return rates, hebbian[index, ..., :size]

    for index, tile in enumerate(tiles):  # write phase
        rates, block_hebbian = tile_views(index, tile, n_keys)
        torch.matmul(k, weights[..., tile], out=rates)
        shift = torch.amax(row_maxima(rates) - k_half, -1, keepdim=True, out=key_shifts[index])  # sequence maximum
        shifted_exp2_(rates, k_half + shift)
        torch.matmul(values, rates, out=block_hebbian)
    key_shift = key_shifts.amax(0)  # (..., 1)
    key_scales = (key_shifts - key_shift).exp2_()  # every tile to the sequence maximum, applied to its read

    response = drive = None
    token_shift = q.new_full((*batch, n_tokens), -math.inf)
    for index, tile in enumerate(tiles):  # read phase
        rates, block_hebbian = tile_views(index, tile, n_tokens)
        torch.matmul(q, weights[..., tile], out=rates)
        # the drive GEMM is fastest with H^T contiguous; g stays a row (a GEMM column of 65 ran 20% slower)
        transposed = block_hebbian[..., :-1, :].transpose(-1, -2).contiguous()
        presynaptic = block_hebbian[..., -1, :]
        previous = None if drive is None else token_shift.clone()
        if fast:
            block_response = native.exp2_online_(rates, token_shift, presynaptic.contiguous())
            block_drive = rates @ transposed
        else:
            torch.maximum(token_shift, rates.amax(-1), out=token_shift)
            block_drive = rates.sub_(token_shift.unsqueeze(-1)).exp2_() @ transposed
            block_response = rates.mul_(presynaptic.unsqueeze(-2)).sum(-1)  # in place: stays in cache
        block_response.mul_(key_scales[index])
        block_drive.mul_(key_scales[index].unsqueeze(-1))
        if drive is None:
            response, drive = block_response, block_drive
        else:  # the running sums to the grown per-token shifts
            rescale = (previous - token_shift).exp2_()
            response.mul_(rescale).add_(block_response)
            drive.mul_(rescale.unsqueeze(-1)).add_(block_drive)
    # phi carries 1/sqrt(rows) on each side; shifts back to natural units
    log_shift = (token_shift.double() - q_half.double() + key_shift.double()) / LOG2E - math.log(rows)
    return response, drive, log_shift


def fused_positive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor):
    """:func:`tiled_positive` in the compiled fused pass (:func:`native.fused_phases`): each tile's GEMMs and its
    exp2 run while the tile is in L1/L2 cache, so no rate leaves the cache and no torch call runs per tile. The
    same numbers (to float rounding): the same base-2 exponents, per-tile key shifts put to the sequence maximum,
    online per-token query shifts. Here only the batch is laid out: each output sequence's batch element of q, k,
    v and W."""
    shapes = tuple(tuple(x.shape[:-2]) for x in (q, k, v, projection))
    batch = torch.Size(np.broadcast_shapes(*shapes))
    flat = [x.reshape(-1, *x.shape[-2:]).contiguous() for x in (q, k, v, projection)]
    response, drive, log_shift = native.fused_phases(*flat, _batch_elements(shapes))
    n_tokens = q.shape[-2]
    return response.view(*batch, n_tokens), drive.view(*batch, n_tokens, -1), log_shift.view(*batch, n_tokens)


@functools.lru_cache(maxsize=64)
def _batch_elements(shapes: tuple[tuple[int, ...], ...]) -> list[torch.Tensor]:
    """For batch shapes that broadcast together, each output sequence's batch element in each (int64, flat);
    cached: the runner calls the circuit with the same shapes thousands of times (never written to)."""
    batch = np.broadcast_shapes(*shapes)
    return [torch.arange(math.prod(shape), dtype=torch.int64, device="cpu").reshape(shape).expand(batch).reshape(-1)
            .contiguous()
            for shape in shapes]


def tiled_paired(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, feature: str):
    """The non-causal circuit for the paired maps (trigonometric, hyperbolic), without autograd: the two phases
    on tiles of projection rows (each row feeds two units) with :func:`tiled_positive`'s shift bookkeeping, so
    that no (batch x N x m) tensor is formed. At m = 65,536 (8 sequences of 197 tokens) those tensors left the
    cache and the paired maps ran at a third of the positive map's speed. Returns response, drive and the log
    shift in natural units, as :func:`positive_circuit`."""
    rows = projection.shape[-2]
    batch = batch_shape(q, projection)
    tiles = tiles_of(2 * math.prod(batch) * q.shape[-2], rows)
    hebbian, presynaptic, key_shifts = [], [], []
    for tile in tiles:  # write phase: each tile shifted by its own maximum over the sequence
        exponent, oscillation = feature_parts(k, projection[..., tile, :], feature, rows)
        shift = exponent.amax(dim=(-2, -1), keepdim=True)
        rates = _rates(exponent, shift, oscillation)
        hebbian.append(v.transpose(-1, -2) @ rates)
        presynaptic.append(rates.sum(-2))
        key_shifts.append(shift.squeeze(-1))
    key_shift = torch.stack(key_shifts).amax(0)  # (..., 1): the sequence maximum
    response = drive = token_shift = None
    for block_hebbian, block_presynaptic, block_shift, tile in zip(hebbian, presynaptic, key_shifts, tiles):
        scale = (block_shift - key_shift).exp_()  # this tile's keys to the sequence maximum
        block_hebbian, block_presynaptic = block_hebbian * scale.unsqueeze(-1), block_presynaptic * scale
        exponent, oscillation = feature_parts(q, projection[..., tile, :], feature, rows)
        token_shift = online_shift(token_shift, exponent.amax(-1, keepdim=True), response, drive, torch.exp)
        rates = _rates(exponent, token_shift, oscillation)
        block_response = (rates * block_presynaptic.unsqueeze(-2)).sum(-1)
        block_drive = rates @ block_hebbian.transpose(-1, -2)
        response, drive = accumulate(response, block_response), accumulate(drive, block_drive)
    return response, drive, token_shift.squeeze(-1).double() + key_shift.double()


def _rates(exponent: torch.Tensor, shift: torch.Tensor, oscillation: torch.Tensor | None) -> torch.Tensor:
    """phi * exp(-shift) from the parts of :func:`feature_parts`."""
    rates = (exponent - shift).exp_()
    return rates if oscillation is None else rates * oscillation


def row_maxima(x: torch.Tensor) -> torch.Tensor:
    """max over the last dim: the compiled pass where it serves (float32, contiguous), else torch's."""
    return native.rows_max(x) if native.available(x) else x.amax(-1)


def shifted_exp2_(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x = 2^(x - shift[..., None]) in place: the compiled pass where it serves, else torch's."""
    if native.available(x):
        return native.exp2_shifted_(x, shift)
    return x.sub_(shift.unsqueeze(-1)).exp2_()


def batch_shape(q: torch.Tensor, projection: torch.Tensor) -> torch.Size:
    """The batch dims of the circuit's outputs: q's, broadcast against a batch of projections."""
    if projection.dim() == 2:
        return q.shape[:-2]
    # numpy's rule, the same as torch's: torch.broadcast_shapes imports torch._refs on first use (0.8 s a process)
    return torch.Size(np.broadcast_shapes(tuple(q.shape[:-2]), tuple(projection.shape[:-2])))


def online_shift(token_shift: torch.Tensor | None, tile_max: torch.Tensor, response: torch.Tensor | None,
                 drive: torch.Tensor | None, exp) -> torch.Tensor:
    """The per-token shift after one more tile of hidden units (an online maximum, as FlashAttention): where it
    grows, the running sums (response, drive; None before the first tile) are rescaled to it in place."""
    if token_shift is None:
        return tile_max
    new_shift = torch.maximum(token_shift, tile_max)
    rescale = exp(token_shift - new_shift)
    response.mul_(rescale.squeeze(-1))
    drive.mul_(rescale)
    return new_shift


def accumulate(total: torch.Tensor | None, block: torch.Tensor) -> torch.Tensor:
    """total + block in place (block itself for the first tile)."""
    return block if total is None else total.add_(block)


def is_tiled(feature: str, causal: bool) -> bool:
    """Whether :func:`run_circuit` takes a tiled path, which keeps its rates in cache (without gradients): every
    map when not causal."""
    return not causal


def tiles_of(batch_tokens: int, rows: int) -> list[slice]:
    """Hidden units in tiles of equal width (the last may be narrower), each about TILE_ELEMENTS rates and
    at least 64 units wide."""
    count = math.ceil(rows / max(64, TILE_ELEMENTS // batch_tokens))
    width = math.ceil(rows / count)
    return [slice(start, min(rows, start + width)) for start in range(0, rows, width)]


def log2_rates(x: torch.Tensor, projection: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """log2 phi(x) for the positive maps: log2(e) (w·x - |x|^2/2) - log2(rows)/2, one GEMM and one pass;
    ``rows`` is the circuit's hidden units when ``projection`` is a tile of them."""
    exponent = (x * LOG2E) @ projection.transpose(-1, -2)
    offset = 0.5 * LOG2E * (x * x).sum(-1, keepdim=True) + 0.5 * math.log2(rows or projection.shape[-2])
    return exponent.sub_(offset)


def stream(phi_q, k_exponent, k_osc, v, exp):
    """Causal write phase: H_t = H_(t-1) + v_t phi(k_t)^T, g_t = g_(t-1) + phi(k_t), read at every t.

    Runs block by block: the state carried between blocks is exactly the running sums; inside a block the
    same sums are formed with a lower-triangular mask. Key exponents are shifted per block, with the carried
    sums rescaled whenever the running maximum grows, so early tokens never underflow. ``exp`` is the base of
    the exponents (torch.exp or torch.exp2); the returned shifts are in that base.
    """
    n = k_exponent.shape[-2]
    hebbian = presynaptic = None  # the running sums, from the end of the first block on
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
        # read: what the carried running sums give (nothing before the first block), plus this block's tokens up
        # to and including t
        within = torch.tril(q_block @ phi_block.transpose(-1, -2))
        response, drive = within.sum(-1), within @ v_block
        if hebbian is not None:
            response += (q_block * presynaptic.unsqueeze(-2)).sum(-1)  # the read phase on the carried sums
            drive += q_block @ hebbian.transpose(-1, -2)
        responses.append(response)
        drives.append(drive)
        shifts.append(new_shift[..., 0, 0, None].expand(*new_shift.shape[:-2], block.stop - block.start))
        if block.stop == n:  # nothing reads the sums after the last block
            break
        # write: fold this block into the running sums
        written = v_block.transpose(-1, -2) @ phi_block
        hebbian = written if hebbian is None else hebbian + written
        presynaptic = phi_block.sum(-2) if presynaptic is None else presynaptic + phi_block.sum(-2)
    return torch.cat(responses, -1), torch.cat(drives, -2), torch.cat(shifts, -1)
