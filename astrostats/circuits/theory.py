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
from astrostats.validation import all_finite, fail


ENTRIES_PER_CHUNK = 2**23  # float64 entries (sequences x T x N) per chunk of sequences: 64 MB
CANCELLATION = 1e-6  # a sequence whose quadratic forms keep less than this share of their largest terms: centred


def centred_quadratic(scale: torch.Tensor, y: torch.Tensor, v: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """sum_{tau,sigma} s_{t tau} s_{t sigma} G_{tau sigma} (v_tau - y_t)·(v_sigma - y_t) per (sequence, token)
    from the centred terms b (S, N, T, d_v): no cancellation, but T x N x d_v entries per sequence."""
    b = (v.unsqueeze(-2) - y.unsqueeze(-3)) * scale.transpose(-1, -2).unsqueeze(-1)
    return (b * (gram @ b.flatten(-2)).view_as(b)).sum(dim=(-3, -1))


def predicted_error_constant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """C per sequence such that the predicted relative output error is C / sqrt(m) (positive features).

    q, k (S, N, d), v (S, N, d_v); computed in float64, in chunks of sequences to bound memory. The quadratic
    form is expanded around y_t, s^T (G o V V^T) s - 2 sum_tau s_tau (y_t·v_tau) (G s)_tau + |y_t|^2 s^T G s,
    so a sequence costs N^2 (T + d_v) rather than T N^2 d_v (SmolLM2's 270 heads at 197 tokens: 145 s to a few);
    where the terms cancel to below CANCELLATION of the largest (attention on one token) the sequence is
    recomputed from the centred terms (:func:`centred_quadratic`).
    """
    q, k, v = q.double(), k.double(), v.double()
    constants = _constants(q, k, v, causal, shifted=False)
    if not all_finite(constants):  # exp(|q|^2) or exp(K K^T) beyond float64: shift, then refuse
        constants = _constants(q, k, v, causal, shifted=True)
    if not all_finite(constants):
        largest = float((q @ k.transpose(-1, -2)).abs().max())
        raise fail("predicted_error_constant: q, k", "norms whose constant float64 can hold (it grows like "
                   "exp(|q|^2 / 2 + |k|^2))", f"max |q|^2 = {float((q * q).sum(-1).max()):.4g}, max |q.k| = {largest:.4g}")
    return constants


def _constants(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, shifted: bool) -> torch.Tensor:
    """The constants in float64; ``shifted``: exp(|q_t|^2) and the Gram matrix exp(k_tau·k_sigma) scaled by their
    largest exponent per sequence, the scale restored in log units at the end (only where the plain form
    overflows: it rounds differently)."""
    step = max(1, ENTRIES_PER_CHUNK // (q.shape[-2] * k.shape[-2]))
    constants = []
    for start in range(0, q.shape[0], step):
        q_s, k_s, v_s = q[start:start + step], k[start:start + step], v[start:start + step]
        logits = attention_logits(q_s, k_s, causal)
        log_z = torch.logsumexp(logits, -1, keepdim=True)
        y = (logits - log_z).exp() @ v_s
        # Var_t m = exp(|q_t|^2) sum b·G b, b_{t tau} = (v_tau - y_t) s_{t tau}, s = exp(2 q_t·k_tau - log Z_t),
        # G = exp(K K^T)
        scale = (2 * logits - log_z).exp()  # zero where masked (logit -inf)
        gram_exponent = k_s @ k_s.transpose(-1, -2)
        gram_shift = gram_exponent.amax(dim=(-2, -1), keepdim=True) if shifted else torch.zeros(())
        gram = (gram_exponent - gram_shift).exp()
        g_scale = scale @ gram  # (G s_t)_tau: G is symmetric
        terms = ((scale * (scale @ (gram * (v_s @ v_s.transpose(-1, -2))))).sum(-1),
                 2 * (scale * (y @ v_s.transpose(-1, -2)) * g_scale).sum(-1),
                 (y * y).sum(-1) * (scale * g_scale).sum(-1))
        weight_exponent = (q_s * q_s).sum(-1)
        weight_shift = weight_exponent.amax(-1, keepdim=True) if shifted else torch.zeros(())
        weights = (weight_exponent - weight_shift).exp()
        quadratic = terms[0] - terms[1] + terms[2]
        # rounding in the expanded terms is relative to the largest of them; a sequence whose total keeps less
        # than CANCELLATION of its terms' total (attention on single tokens) is recomputed centred
        largest = (weights * torch.maximum(terms[0], terms[2])).sum(-1)
        total = (weights * quadratic).sum(-1)
        cancelled = ~torch.isfinite(total) | (total <= CANCELLATION * largest)  # inf - inf in the expansion too
        for row in cancelled.nonzero().flatten().tolist():
            quadratic[row] = centred_quadratic(scale[row], y[row], v_s[row], gram[row])
        variance_times_m = weights * quadratic
        constant = variance_times_m.sum(-1).sqrt() / y.flatten(1).norm(dim=-1)
        if shifted:  # sqrt(exp(weight_shift + gram_shift)) restored in log units
            log_scale = 0.5 * (weight_shift.squeeze(-1) + gram_shift.reshape(gram_shift.shape[0]))
            constant = (constant.log() + log_scale).exp()
        constants.append(constant)
    return torch.cat(constants)
