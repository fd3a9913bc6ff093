"""Null circuits: what agreement looks like without the ingredient under test.

* uniform attention: the mean of the values (no query dependence at all);
* no astrocyte: the same Hebbian read-out H phi(q_t), divided by one gain per sequence (the mean response)
  instead of the astrocyte's per-query response a_t: tests whether the division is what matters;
* elu+1 linear attention (Katharopoulos et al. 2020): a fixed, non-random feature map of width d;
* shuffled keys/values: the circuit run on another sequence's keys and values (built by the runner);
* mismatched target: the circuit built from another head's q and k (built by the runner).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from astrostats.circuits.astrocyte import _circuit, read_phase, write_phase
from astrostats.circuits.attention import causal_mask, check_qkv
from astrostats.circuits.finite import as_dtype, finite_result
from astrostats.validation import all_finite


def uniform_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Every query gets the (prefix) mean of the values."""
    check_qkv(q, k, v, causal)
    return finite_result("uniform_attention", lambda q, k, v: _uniform(q, k, v, causal), (q, k, v), as_dtype)


def _uniform(q, k, v, causal):
    n = v.shape[-2]
    if causal:
        counts = torch.arange(1, n + 1, dtype=v.dtype).unsqueeze(-1)
        return v.cumsum(-2) / counts
    return v.mean(-2, keepdim=True).expand(*q.shape[:-1], v.shape[-1])


def no_astrocyte_attention(q, k, v, projection, feature="positive", causal=False) -> torch.Tensor:
    """Hebbian read-out without the astrocyte: y_t = H phi(q_t) / mean_t a_t (one gain per sequence)."""
    check_qkv(q, k, v, causal)
    return finite_result("no_astrocyte_attention", lambda *x: _no_astrocyte(*x, feature, causal),
                         (q, k, v, projection), as_dtype)


def _no_astrocyte(q, k, v, projection, feature, causal):
    """:func:`no_astrocyte_attention` on inputs of one dtype. Where the responses exp(log a_t) overflow (or
    vanish), they are scaled by their largest per sequence first: the scale cancels between drive and gain."""
    result = _circuit(q, k, v, projection, feature, causal)
    log_response = result.log_response
    response = log_response.exp()
    if not (all_finite(response) and bool((response.amax(-1) > 0).all())):
        response = (log_response - log_response.amax(-1, keepdim=True)).exp()
    drive = result.output * response.unsqueeze(-1).to(result.output.dtype)
    gain = response.mean(-1, keepdim=True).unsqueeze(-1).to(result.output.dtype)
    return drive / gain


def elu_linear_attention(q, k, v, causal=False) -> torch.Tensor:
    """Linear attention with phi(x) = elu(x) + 1: no random features, width d."""
    check_qkv(q, k, v, causal)
    return finite_result("elu_linear_attention", lambda q, k, v: _elu_linear(q, k, v, causal), (q, k, v), as_dtype)


def _elu_linear(q, k, v, causal):
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    if causal:
        weights = (phi_q @ phi_k.transpose(-1, -2)) * causal_mask(q.shape[-2], k.shape[-2])
        return (weights @ v) / weights.sum(-1, keepdim=True)
    hebbian, presynaptic = write_phase(phi_k, v)
    response, drive = read_phase(hebbian, presynaptic, phi_q)
    return drive / response.unsqueeze(-1)
