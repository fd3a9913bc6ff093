"""Exact softmax attention: the target every circuit is scored against.

Queries and keys arrive already scaled, so ``q @ k.T`` is the logit; :func:`scale_queries_keys`
applies the usual d_head^(-1/4) to each of them (paper-notes.md: "Queries and keys are each divided
by d_head^(1/4)").
"""
from __future__ import annotations

import torch

from astrostats.validation import check_bool, check_tensor, fail


def scale_queries_keys(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide q and k each by d_head^(1/4), so that q·k carries 1/sqrt(d_head)."""
    factor = q.shape[-1] ** -0.25
    return q * factor, k * factor


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> None:
    """Shapes (..., N_q, d), (..., N, d), (..., N, d_v) with matching batch dims, all finite; causal
    (streaming) attention reads query t after writing token t, so it needs N_q = N. No dimension may be
    empty: attention over zero keys (or an empty batch) has no value to return."""
    check_bool("causal", causal)
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x, min_dim=2)
        if x.numel() == 0:
            raise fail(name, "a tensor with no empty dimension (at least one token, one sequence)", tuple(x.shape))
    if q.shape[-1] != k.shape[-1]:
        raise fail("k", f"last dimension {q.shape[-1]} (as q)", tuple(k.shape))
    if k.shape[:-1] != v.shape[:-1]:
        raise fail("v", f"leading shape {tuple(k.shape[:-1])} (as k)", tuple(v.shape))
    if q.shape[:-2] != k.shape[:-2]:
        raise fail("k", f"batch shape {tuple(q.shape[:-2])} (as q)", tuple(k.shape))
    if causal and q.shape[-2] != k.shape[-2]:
        raise fail("k", f"{q.shape[-2]} tokens (as q) in causal mode", tuple(k.shape))


def causal_mask(n_queries: int, n_keys: int, device=None) -> torch.Tensor:
    """True where query t may attend key tau (tau <= t)."""
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril()


def attention_logits(q: torch.Tensor, k: torch.Tensor, causal: bool = False) -> torch.Tensor:
    logits = q @ k.transpose(-1, -2)
    if causal:
        logits = logits.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], q.device), float("-inf"))
    return logits


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """y_t = sum_tau softmax_tau(q_t·k_tau) v_tau, batched over any leading dimensions. Finite or an InputError
    (:mod:`astrostats.circuits.finite`: half precision computed in float32, mixed dtypes promoted)."""
    from astrostats.circuits.finite import as_dtype, finite_result

    check_qkv(q, k, v, causal)
    return finite_result("softmax_attention", lambda q, k, v: torch.softmax(attention_logits(q, k, causal), dim=-1) @ v,
                         (q, k, v), as_dtype)


def log_normaliser(q: torch.Tensor, k: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """log sum_tau exp(q_t·k_tau): the exact value the astrocyte response a_t estimates (in log space,
    so that peaked heads do not overflow)."""
    return torch.logsumexp(attention_logits(q, k, causal), dim=-1)
