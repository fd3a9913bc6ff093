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


def predicted_error_constant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """C per sequence such that the predicted relative output error is C / sqrt(m) (positive features).

    q, k (S, N, d), v (S, N, d_v); computed in float64, one sequence at a time to bound memory.
    """
    constants = []
    for q_s, k_s, v_s in zip(q.double(), k.double(), v.double()):
        logits = attention_logits(q_s, k_s, causal)
        log_z = torch.logsumexp(logits, -1, keepdim=True)
        weights = (logits - log_z).exp()
        y = weights @ v_s
        # b_{t tau} = (v_tau - y_t) exp(2 q_t·k_tau - log Z_t); Var_t m = exp(|q_t|^2) sum b·G b, G = exp(K K^T)
        scale = (2 * logits - log_z).exp()  # zero where masked (logit -inf)
        centred = v_s.unsqueeze(0) - y.unsqueeze(1)  # (T, N, d_v)
        b = centred * scale.unsqueeze(-1)
        gram = (k_s @ k_s.T).exp()
        quadratic = torch.einsum("tnv,nm,tmv->t", b, gram, b)
        variance_times_m = ((q_s * q_s).sum(-1)).exp() * quadratic
        constants.append(variance_times_m.sum().sqrt() / y.norm())
    return torch.stack(constants)
