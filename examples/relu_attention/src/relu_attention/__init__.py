"""Circuits brought from outside astrostats: plain functions (q, k, v, *, m, seed, causal) -> output.

q and k come scaled so that q·k is the logit (astrostats' convention); v is (S, N, d_v).
"""
import math

import torch


def _draw(m: int, d: int, seed: int, dtype) -> torch.Tensor:
    return torch.randn(m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _linear_attention(phi_q, phi_k, v, causal):
    """y_t = sum_j phi(q_t)·phi(k_j) v_j / sum_j phi(q_t)·phi(k_j): the astrocyte's two phases, without one."""
    if causal:
        weights = (phi_q @ phi_k.transpose(-1, -2)).tril()
        return weights @ v / weights.sum(-1, keepdim=True).clamp_min(1e-30)
    return (phi_q @ (phi_k.transpose(-1, -2) @ v)) / (phi_q @ phi_k.sum(-2).unsqueeze(-1)).clamp_min(1e-30)


def relu_attention(q, k, v, *, m, seed, causal=False):
    """Normalised linear attention with ReLU random features: phi(x) = relu(W x) / sqrt(m)."""
    w = _draw(m, q.shape[-1], seed, q.dtype)
    phi_q, phi_k = torch.relu(q @ w.T) / math.sqrt(m), torch.relu(k @ w.T) / math.sqrt(m)
    return _linear_attention(phi_q, phi_k, v, causal)


def performer(q, k, v, *, m, seed, causal=False):
    """FAVOR+ positive random features (Choromanski et al. 2021): phi(x) = exp(W x - |x|^2 / 2) / sqrt(m), an
    unbiased estimate of exp(q·k); shifted by the largest exponent, which cancels in the ratio."""
    w = _draw(m, q.shape[-1], seed, q.dtype)
    exponent_q = q @ w.T - (q * q).sum(-1, keepdim=True) / 2
    exponent_k = k @ w.T - (k * k).sum(-1, keepdim=True) / 2
    phi_q = (exponent_q - exponent_q.amax(-1, keepdim=True)).exp()
    phi_k = (exponent_k - exponent_k.amax(dim=(-2, -1), keepdim=True)).exp()
    return _linear_attention(phi_q, phi_k, v, causal)
