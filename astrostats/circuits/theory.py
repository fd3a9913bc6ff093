"""What random-feature theory predicts for the circuit's error (Performer Lemma 2 and the delta method).

For positive features with m i.i.d. Gaussian rows, the estimate of kappa_tau = exp(q·k_tau) has
Cov(kappa_hat_tau, kappa_hat_sigma) = kappa_tau kappa_sigma (exp((q + k_tau)·(q + k_sigma)) - 1) / m, so the
delta method for the ratio y_hat_t = sum v kappa_hat / sum kappa_hat gives (paper-notes.md)

    E|y_hat_t - y_t|^2 ~ (1/m) sum_{tau,sigma} a_{t tau} a_{t sigma} (v_tau - y_t)·(v_sigma - y_t)
                                        exp((q_t + k_tau)·(q_t + k_sigma)),

with softmax weights a. The "-1" term drops out because sum_tau a_{t tau} (v_tau - y_t) = 0.
"""
from __future__ import annotations

import torch

from astrostats.circuits.attention import attention_logits


ENTRIES_PER_CHUNK = 2**23  # float64 terms (sequences x T x N x d_v) per chunk of sequences: 64 MB


def predicted_error_constant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """C per sequence such that the predicted relative output error is C / sqrt(m) (positive features).

    q, k (S, N, d), v (S, N, d_v); computed in float64, in chunks of sequences to bound memory.
    """
    q, k, v = q.double(), k.double(), v.double()
    step = max(1, ENTRIES_PER_CHUNK // (q.shape[-2] * k.shape[-2] * v.shape[-1]))
    constants = []
    for start in range(0, q.shape[0], step):
        q_s, k_s, v_s = q[start:start + step], k[start:start + step], v[start:start + step]
        logits = attention_logits(q_s, k_s, causal)
        log_z = torch.logsumexp(logits, -1, keepdim=True)
        y = (logits - log_z).exp() @ v_s
        # b_{t tau} = (v_tau - y_t) exp(2 q_t·k_tau - log Z_t); Var_t m = exp(|q_t|^2) sum b·G b, G = exp(K K^T)
        scale = (2 * logits - log_z).exp()  # zero where masked (logit -inf)
        # laid out (S, N, T, d_v) so that G b is one GEMM per sequence, N x N times N x (T d_v)
        b = (v_s.unsqueeze(-2) - y.unsqueeze(-3)) * scale.transpose(-1, -2).unsqueeze(-1)
        gram = (k_s @ k_s.transpose(-1, -2)).exp()
        quadratic = (b * (gram @ b.flatten(-2)).view_as(b)).sum(dim=(-3, -1))
        variance_times_m = (q_s * q_s).sum(-1).exp() * quadratic
        constants.append(variance_times_m.sum(-1).sqrt() / y.flatten(1).norm(dim=-1))
    return torch.cat(constants)
