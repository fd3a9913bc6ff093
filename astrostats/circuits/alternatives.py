"""Other biologically motivated circuits that compute attention, beside the astrocyte circuit (claim C7).

Same interface as :func:`astrostats.circuits.astrocyte.astrocyte_attention`: (q, k, v) -> y, causal or not,
with ``return_response=True`` adding the normaliser (float64, original units) where the circuit has one.

* :func:`dense_associative_memory` (Krotov & Hopfield, ICLR 2021, arXiv 2008.06996): one hidden neuron per
  stored memory, its input synapses set to the key and its output synapses to the value by one-shot
  Hebbian storage; the hidden layer's rates exp(q·k_mu) are divisively normalised, which is softmax
  attention *exactly* when every token has its own unit (m = N). With m < N units, ``mode="merge"`` puts
  tokens into m contiguous groups (token tau to unit floor(tau m / N); no clustering, so causal storage
  is online) and each unit stores the running mean key and value of its group and a gain equal to its
  count (rate c_j exp(q·k̄_j)); ``mode="drop"`` keeps only the m most recent tokens (a sliding window).
* :func:`interneuron_attention`: the astrocyte circuit with the astrocyte replaced by inhibitory
  interneurons, each integrating at most ``fan_in`` inputs. ``pool="tree"``: level-one interneurons sum
  fan_in hidden units each (the couplings g_j sit on their synapses), higher levels sum those, up to one
  cell that divides: exact, at the cost of ceil(m / fan_in) + ... cells and one synaptic stage per level
  (no error in this rate model; noise or saturation per level would add some, and are not modelled).
  ``pool="sampled"``: one interneuron that integrates only min(m, fan_in) of the hidden units, its sum
  scaled by m / fan_in (no extra cells, but the normaliser sees fewer features than the numerator).
* :func:`hebbian_only_attention`: the Hebbian read-out H phi(q_t) with no normaliser at all, only the fixed
  gain 1 / n_t (n_t the tokens written so far, so the output stays bounded as memories accumulate).
"""
from __future__ import annotations

import math

import torch

from astrostats.circuits.astrocyte import _circuit, hidden_units
from astrostats.circuits.attention import check_qkv
from astrostats.circuits.finite import as_dtype, finite_result
from astrostats.validation import check_bool, check_choice, check_int, fail

DAM_MODES = ("merge", "drop")
POOLS = ("tree", "sampled")


def _groups(n_tokens: int, m: int) -> torch.Tensor:
    """Unit of each token: floor(tau m / N), m contiguous groups whose sizes differ by at most one."""
    return torch.arange(n_tokens) * m // n_tokens


def dense_associative_memory(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int | None = None, *,
                             mode: str = "merge", causal: bool = False, return_response: bool = False):
    """Krotov–Hopfield dense associative memory read by the queries: y_t = sum_j r_tj v̄_j / sum_j r_tj with
    hidden rates r_tj = c_j exp(q_t·k̄_j); m hidden units (default N: one per token, exact softmax)."""
    check_qkv(q, k, v, causal)
    check_choice("mode", mode, DAM_MODES)
    n_tokens = k.shape[-2]
    m = n_tokens if m is None else check_int("m", m, minimum=1)
    if m > n_tokens:
        raise fail("m", f"an integer in [1, {n_tokens}] (at most one hidden unit per stored token)", m)
    check_bool("return_response", return_response)
    restore = ((lambda r, dtype: (r[0].to(dtype), r[1])) if return_response else as_dtype)
    return finite_result("dense_associative_memory",
                         lambda q, k, v: _memory(q, k, v, m, mode, causal, return_response), (q, k, v), restore)


def _memory(q, k, v, m, mode, causal, return_response):
    """:func:`dense_associative_memory` on checked inputs of one dtype."""
    n_tokens = k.shape[-2]
    if mode == "drop":  # the m most recent memories: a window of m keys ending at (causal) or after (not) t
        logits = q @ k.transpose(-1, -2)
        query_index = torch.arange(q.shape[-2]).unsqueeze(-1) if causal else torch.tensor([[n_tokens - 1]])
        age = query_index - torch.arange(n_tokens)
        logits = logits.masked_fill((age < 0) | (age >= m), -math.inf)
        return _normalised(logits, v, return_response)
    unit = _groups(n_tokens, m)
    members = torch.nn.functional.one_hot(unit, m).to(k.dtype)  # (N, m)
    counts = members.sum(0)
    mean_keys = (members.T @ k) / counts.unsqueeze(-1)  # one-shot Hebbian storage of each unit's mean
    mean_values = (members.T @ v) / counts.unsqueeze(-1)
    logits = q @ mean_keys.transpose(-1, -2) + counts.log()  # rate c_j exp(q·k̄_j), in log units
    if not causal:
        return _normalised(logits, mean_values, return_response)
    # causal: at t, unit unit(t) holds the running mean of its tokens so far, later units are still empty
    first = torch.searchsorted(unit, torch.arange(m))[unit]  # first token of each token's unit
    partial_keys, so_far = _running_group_means(k, first)
    partial_values, _ = _running_group_means(v, first)
    current = ((q * partial_keys).sum(-1, keepdim=True) + so_far.log())  # the partial unit's log rate
    logits = logits.scatter(-1, unit.expand(*q.shape[:-1]).unsqueeze(-1), current)
    logits = logits.masked_fill(torch.arange(m) > unit.unsqueeze(-1), -math.inf)
    weights = torch.softmax(logits, -1)
    here = weights.gather(-1, unit.expand(*q.shape[:-1]).unsqueeze(-1))  # weight of the partial unit
    output = weights @ mean_values + here * (partial_values - mean_values[..., unit, :])
    if return_response:
        return output, logits.double().logsumexp(-1).exp()
    return output


def _running_group_means(x: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of x over tokens first[t]..t (the part of t's group written by time t), and that count."""
    sums = torch.cat([torch.zeros_like(x[..., :1, :]), x.cumsum(-2)], -2)
    count = (torch.arange(x.shape[-2]) - first + 1).to(x.dtype).unsqueeze(-1)
    return (sums[..., 1:, :] - sums[..., first, :]) / count, count


def _normalised(logits: torch.Tensor, values: torch.Tensor, return_response: bool):
    """Divisive normalisation of the hidden rates exp(logits), read out through the values."""
    output = torch.softmax(logits, -1) @ values
    if return_response:
        return output, logits.double().logsumexp(-1).exp()
    return output


def _partial_sums(terms: torch.Tensor, fan_in: int) -> torch.Tensor:
    """Sum the last axis through a tree of cells with at most ``fan_in`` inputs each (one level per pass)."""
    while terms.shape[-1] > 1:
        cells = math.ceil(terms.shape[-1] / fan_in)
        padded = torch.nn.functional.pad(terms, (0, cells * fan_in - terms.shape[-1]))
        terms = padded.unflatten(-1, (cells, fan_in)).sum(-1)
    return terms.squeeze(-1)


def interneuron_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int | None = None, *,
                          fan_in: int, pool: str = "tree", projection: torch.Tensor | None = None,
                          feature: str = "positive", seed: int | None = None, causal: bool = False,
                          return_response: bool = False):
    """The astrocyte circuit with an interneuron pool (cells of at most ``fan_in`` inputs) as normaliser.

    Level one: interneuron i sums g_j phi_j(q_t) over its block of at most fan_in hidden units, which is the
    astrocyte circuit's response restricted to that block (times the block's width, phi carrying 1/sqrt of
    the width). Tree: higher levels add those sums, fan_in at a time, up to one cell; the output neurons
    still read every hidden unit (their drive is the sum of the blocks' drives). Sampled: only the first
    block's cell exists, and its sum, scaled by m / width, stands for the whole.
    """
    check_qkv(q, k, v, causal)
    fan_in = check_int("fan_in", fan_in, minimum=2)
    check_choice("pool", pool, POOLS)
    check_bool("return_response", return_response)
    projection = hidden_units(q, m, projection, feature, seed)
    restore = ((lambda r, dtype: (r[0].to(dtype), r[1])) if return_response else as_dtype)
    return finite_result("interneuron_attention",
                         lambda *x: _interneurons(*x, fan_in, pool, feature, causal, return_response),
                         (q, k, v, projection), restore)


def _interneurons(q, k, v, projection, fan_in, pool, feature, causal, return_response):
    """:func:`interneuron_attention` on checked inputs of one dtype: output in float64 (cast by the caller)."""
    rows = projection.shape[-2]
    blocks = [slice(start, min(rows, start + fan_in)) for start in range(0, rows, fan_in)]
    cells = [_circuit(q, k, v, projection[..., block, :], feature, causal) for block in blocks]
    log_sums = torch.stack([cell.log_response + math.log(block.stop - block.start)  # natural units, float64
                            for cell, block in zip(cells, blocks)], -1)
    shift = log_sums.amax(-1, keepdim=True)  # per token; cancels in the ratio
    sums = (log_sums - shift).exp()
    drive = sum(cell.output.double() * sums[..., i, None] for i, cell in enumerate(cells))  # H phi(q_t), shifted
    if pool == "tree":
        response = _partial_sums(sums, fan_in)
    else:
        response = sums[..., 0] * (rows / (blocks[0].stop - blocks[0].start))
    output = drive / response.unsqueeze(-1)
    if return_response:  # the estimate of sum_tau exp(q_t·k_tau), as the astrocyte's a_t: sums / m
        return output, (response.log() + shift.squeeze(-1) - math.log(rows)).exp()
    return output


def hebbian_only_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int | None = None, *,
                           projection: torch.Tensor | None = None, feature: str = "positive",
                           seed: int | None = None, causal: bool = False) -> torch.Tensor:
    """y_t = H phi(q_t) / n_t: the Hebbian synapses read with no normaliser, only a fixed gain per count."""
    check_qkv(q, k, v, causal)
    projection = hidden_units(q, m, projection, feature, seed)
    return finite_result("hebbian_only_attention", lambda *x: _hebbian(*x, feature, causal), (q, k, v, projection),
                         as_dtype, reason="a Hebbian read-out (of size exp(q.k)) that float64 and the inputs' dtype "
                                          "can hold")


def _hebbian(q, k, v, projection, feature, causal):
    """:func:`hebbian_only_attention` on checked inputs of one dtype: float64 (cast by the caller)."""
    result = _circuit(q, k, v, projection, feature, causal)
    drive = result.output.double() * result.log_response.exp().unsqueeze(-1)  # H phi(q_t), original units
    n_tokens = k.shape[-2]
    written = torch.arange(1, n_tokens + 1) if causal else torch.full((q.shape[-2],), n_tokens)
    return drive / written.unsqueeze(-1)


__all__ = ["dense_associative_memory", "interneuron_attention", "hebbian_only_attention", "DAM_MODES", "POOLS"]
