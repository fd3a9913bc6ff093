"""Realistic astrocytes: each idealisation of the circuit replaced by what experiments measure.

The ideal circuit (astrocyte.py) divides the Hebbian drive H phi(q_t) by an exact, instantaneous, noiseless,
linear astrocyte response a_t = g·phi(q_t). Each variant here changes one of those words, with the numbers of
../shared/reference/astrocyte-biophysics.md:

* ``Saturating``: a_t through a Hill curve, n = 1, 2, 4 (IP3-receptor cooperativity 3-4, Mak et al. 2001;
  the Li-Rinzel steady state has n ~ 1.9), EC50 as a multiple of the median a_t.
* ``SlowDivisor``: a_t through a causal rise/decay kernel, tokens every ``token_interval_s`` (speech and
  reading: 10-50 ms per token). Kernels: difference of exponentials at given time constants (rise 0.1-3 s,
  decay 0.35-20 s: Stobart 2018, Rupprecht 2024, Prothero 1998), or the event shape calibrated on the real
  culture traces (10-90 % rise 0.55 s, peak-to-half decay 0.35 s; astrostats.targets.recordings).
* ``LiRinzel``: a_t drives IP3 production of a Li-Rinzel (1994) astrocyte (Nadkarni & Jung 2003 parameters),
  integrated in time with torch RK4; its Ca2+ is the divisor. Operating points below, inside (IP3 ~ 0.37-0.7 uM)
  and above the oscillating range.
* ``WholeCellNoise`` / ``ProcessNoise``: multiplicative noise at the measured event SNR (about 3.1, 2.0-5.5,
  culture traces), on the whole-cell response or independently on every process. On the whole cell, CV =
  1/event-SNR (about 0.32 per token) builds a floor of about 0.35 by construction: a stress test, not a
  measurement. ``BaselineNoise`` derives the divisor's noise from the calibrated baseline noise instead
  (CV = scale x about 1 % dF/F, the scale swept as a declared assumption).
* ``Microdomains``: the m processes split into independent domains (5-50), each dividing its own synapses,
  with a whole-cell response only when >= 23 % of domains are active (Lines et al., eLife 90046).
* ``HeterogeneousGains``: log-normal per-process gains (James et al. 2011), with and without coupling.
* ``Ideal`` (the paper's circuit) and ``NoAstrocyte`` (the null: one gain per sequence instead of a_t).

All variants are pure tensor functions of the circuit's pieces (the drive H phi(q_t) and response a_t, or
phi(q), phi(k) and v), so they compose with every feature map and target. A divisor that is not a positive
finite number gives a non-finite output, which the caller must flag.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import torch

from astrostats.circuits.astrocyte import _shifted, read_phase, run_circuit, write_phase
from astrostats.circuits.attention import causal_mask
from astrostats.circuits.features import feature_parts
from astrostats.validation import check_choice, check_float, check_int, fail

TOKEN_INTERVAL_S = 0.025  # one token every 25 ms: within the 10-50 ms of speech and reading
WHOLE_CELL_FRACTION = 0.23  # fraction of the arbor active for a whole-cell surge (Lines et al., eLife 90046)
MEASURED_EVENT_SNR = 3.1  # single-event peak / baseline noise SD, culture traces (Schroeder et al. 2022 data)
BASELINE_NOISE_SD = 0.0105  # baseline noise SD in dF/F, culture traces (astrostats.targets.recordings calibration)


# --------------------------------------------------------------------------------------------------------
# Circuit pieces: computed once per (projection, target), shared by every variant
# --------------------------------------------------------------------------------------------------------

class CircuitPieces(NamedTuple):
    """drive H phi(q_t) (..., T, d_v) and response a_t (..., T), float64, in one per-sequence unit (so
    variants that compare a_t across tokens see true ratios); ``phi_q``, ``phi_k`` (float64, one shift per
    sequence) and ``v`` for the per-process variants, or None when not needed."""

    drive: torch.Tensor
    response: torch.Tensor
    phi_q: torch.Tensor | None
    phi_k: torch.Tensor | None
    v: torch.Tensor
    causal: bool


def process_features(q: torch.Tensor, k: torch.Tensor, projection: torch.Tensor,
                     feature: str = "positive") -> tuple[torch.Tensor, torch.Tensor]:
    """phi(q), phi(k) per process in float64, each scaled by one constant per sequence (which cancels in
    every ratio and keeps comparisons across tokens exact)."""
    projection = projection.double()
    q_exponent, q_osc = feature_parts(q.double(), projection, feature)
    k_exponent, k_osc = feature_parts(k.double(), projection, feature)
    return _shifted(q_exponent, q_osc, (-2, -1))[0], _shifted(k_exponent, k_osc, (-2, -1))[0]


def circuit_pieces(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor,
                   feature: str = "positive", causal: bool = False, per_process: bool = True) -> CircuitPieces:
    """Drive and response of the ideal circuit (astrocyte.run_circuit), expressed relative to each
    sequence's median response; with ``per_process`` also the per-process features."""
    result = run_circuit(q, k, v, projection.to(q.dtype), feature, causal)
    log_response = result.log_response
    reference = log_response.median(dim=-1, keepdim=True).values
    response = (log_response - reference).exp()
    drive = result.output.double() * response.unsqueeze(-1)
    phi_q = phi_k = None
    if per_process:
        phi_q, phi_k = process_features(q, k, projection, feature)
    return CircuitPieces(drive, response, phi_q, phi_k, v.double(), causal)


def divide(drive: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """y_t = drive_t / divisor_t: the astrocyte's division of the synaptic output."""
    return drive / divisor.unsqueeze(-1)


def hebbian_parts(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                  response_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drive H phi(q_t) and response sum_i w_i g_i phi_i(q_t), where w are per-process weights on the
    astrocyte's side only (gains or noise; broadcast against phi_q). Non-causal: the write/read phases of
    astrocyte.py; causal: the same sums with the running-sum (lower-triangular) mask written out."""
    if not causal:
        hebbian, presynaptic = write_phase(phi_k, v)
        response, drive = read_phase(hebbian, presynaptic, phi_q if response_weights is None
                                     else phi_q * response_weights)
        if response_weights is not None:
            drive = phi_q @ hebbian.transpose(-1, -2)  # the weights act on the astrocyte's side only
        return drive, response
    mask = causal_mask(phi_q.shape[-2], phi_k.shape[-2])
    scores = (phi_q @ phi_k.transpose(-1, -2)) * mask
    if response_weights is not None:
        return scores @ v, (((phi_q * response_weights) @ phi_k.transpose(-1, -2)) * mask).sum(-1)
    return scores @ v, scores.sum(-1)


# --------------------------------------------------------------------------------------------------------
# 1. Saturating divisor
# --------------------------------------------------------------------------------------------------------

def hill(x: torch.Tensor, ec50: torch.Tensor | float, hill_n: float) -> torch.Tensor:
    """x^n / (EC50^n + x^n), written as 1 / (1 + (EC50/x)^n) so large x does not overflow."""
    return 1.0 / (1.0 + (ec50 / x) ** hill_n)


def saturating_divisor(response: torch.Tensor, hill_n: float, ec50_ratio: float) -> torch.Tensor:
    """Hill-saturated response, EC50 = ec50_ratio x the median a_t of each sequence, scaled so that the
    divisor equals a_t at the median (the operating point): f(a) = a_med h(a) / h(a_med). Negative
    responses (signed feature maps) are rectified at 0: a concentration cannot be negative."""
    median = response.median(dim=-1, keepdim=True).values
    rectified = response.clamp_min(0.0)
    ec50 = ec50_ratio * median
    return median * hill(rectified, ec50, hill_n) / hill(median, ec50, hill_n)


# --------------------------------------------------------------------------------------------------------
# 2. Slow divisor: causal rise/decay kernel
# --------------------------------------------------------------------------------------------------------

KERNEL_SHAPES = ("exponential", "event")
_RISE_PER_SIGMA = math.sqrt(2 * math.log(10)) - math.sqrt(2 * math.log(10 / 9))  # 10-90 % of a half-Gaussian
_HALF_PER_SIGMA = math.sqrt(2 * math.log(2))  # peak to half of a half-Gaussian


def event_shape(t: torch.Tensor, peak_s: float, rise_s: float, decay_s: float) -> torch.Tensor:
    """Calcium event, peak 1 at ``peak_s``: a half-Gaussian rise with 10-90 % rise time ``rise_s`` and a
    half-Gaussian fall with peak-to-half decay ``decay_s``. Chosen because the culture events rise more
    slowly than they fall (0.55 s vs 0.35 s), which a difference of exponentials cannot do."""
    sigma = torch.where(t < peak_s, torch.as_tensor(rise_s / _RISE_PER_SIGMA, dtype=t.dtype),
                        torch.as_tensor(decay_s / _HALF_PER_SIGMA, dtype=t.dtype))
    return torch.exp(-0.5 * ((t - peak_s) / sigma) ** 2)


def rise_decay_kernel(rise_s: float, decay_s: float, token_interval_s: float = TOKEN_INTERVAL_S,
                      shape: str = "exponential") -> torch.Tensor:
    """Causal kernel taps k_0, k_1, ... (float64, sum 1 over the full support) at the token interval.

    ``exponential``: two first-order stages in series with time constants ``rise_s`` and ``decay_s`` (exact
    zero-order-hold discretisation), impulse response ~ exp(-t/decay) - exp(-t/rise).
    ``event``: the measured event shape (:func:`event_shape`), starting 3 rise-sigmas before its peak, with
    ``rise_s`` the 10-90 % rise time and ``decay_s`` the peak-to-half decay.
    """
    rise_s = check_float("rise_s", rise_s, minimum=0.0, strict=True)
    decay_s = check_float("decay_s", decay_s, minimum=0.0, strict=True)
    dt = check_float("token_interval_s", token_interval_s, minimum=0.0, strict=True)
    check_choice("shape", shape, KERNEL_SHAPES)
    if shape == "exponential":
        n_taps = int(math.ceil(12 * max(rise_s, decay_s) / dt)) + 2
        j = torch.arange(n_taps, dtype=torch.float64)
        a_r, a_d = math.exp(-dt / rise_s), math.exp(-dt / decay_s)
        if abs(a_r - a_d) < 1e-12:  # equal time constants: the limit (j + 1) a^j
            taps = (1 - a_r) ** 2 * (j + 1) * a_r**j
        else:
            taps = (1 - a_r) * (1 - a_d) * (a_d ** (j + 1) - a_r ** (j + 1)) / (a_d - a_r)
    else:
        rise_sigma, decay_sigma = rise_s / _RISE_PER_SIGMA, decay_s / _HALF_PER_SIGMA
        peak = 3.0 * rise_sigma
        n_taps = int(math.ceil((peak + 6.0 * decay_sigma) / dt)) + 2
        taps = event_shape((torch.arange(n_taps, dtype=torch.float64) + 0.5) * dt, peak, rise_s, decay_s)
    return taps / taps.sum()


def causal_filter(signal: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """y_t = sum_j k_j x_(t-j) along the last axis, with x held at its first value before t = 0 (the
    astrocyte has been seeing that input for a long time), so a constant input passes unchanged."""
    n = signal.shape[-1]
    taps = torch.zeros(n, dtype=kernel.dtype)
    taps[: min(n, kernel.shape[0])] = kernel[:n]
    lags = torch.arange(n).unsqueeze(1) - torch.arange(n).unsqueeze(0)  # t - s
    toeplitz = torch.where(lags >= 0, taps[lags.clamp_min(0)], torch.zeros((), dtype=kernel.dtype))
    held = (1.0 - taps.cumsum(0)).clamp_min(0.0)  # kernel mass that falls before the first token
    signal = signal.to(kernel.dtype)
    return signal @ toeplitz.T + held * signal[..., :1]


def slow_divisor(response: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The astrocyte response passed through a causal rise/decay kernel: it lags and smears."""
    return causal_filter(response, kernel)


# --------------------------------------------------------------------------------------------------------
# 3. Li-Rinzel astrocyte, integrated in time
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiRinzelParameters:
    """Li & Rinzel (1994) as parameterised by Nadkarni & Jung (2003) (NEST's astrocyte_lr_1994), with
    Ca_ER = (Ca_tot - Ca) / r (the Li-Rinzel form; one NEST version differs, see the reference notes).
    Concentrations in uM, times in s."""

    ca_total: float = 2.0
    ip3_rest: float = 0.16  # IP3_0
    kd_ip3_1: float = 0.13
    kd_ip3_2: float = 0.9434
    kd_activation: float = 0.08234
    kd_inhibition: float = 1.049
    tau_ip3: float = 7.142
    k_serca: float = 0.1
    er_ratio: float = 0.185  # r, ER / cytosol volume
    k_ip3r: float = 0.2  # /(uM s)
    v_ip3r: float = 6.0  # /s
    v_leak: float = 0.11  # /s
    v_serca: float = 0.9  # uM/s
    ca_initial: float = 0.073
    h_initial: float = 0.793

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            positive = item.name not in ("ca_initial", "ip3_rest")
            check_float(f"LiRinzelParameters.{item.name}", value, minimum=0.0, strict=positive)
        check_float("LiRinzelParameters.h_initial", self.h_initial, minimum=0.0, maximum=1.0)
        if self.ca_initial > self.ca_total:
            raise fail("LiRinzelParameters.ca_initial", f"a concentration <= ca_total ({self.ca_total})",
                       self.ca_initial)


class LiRinzelState(NamedTuple):
    ip3: torch.Tensor
    ca: torch.Tensor
    h: torch.Tensor


def li_rinzel_rates(state: LiRinzelState, ip3_input: torch.Tensor, p: LiRinzelParameters) -> LiRinzelState:
    """Time derivatives of (IP3, Ca, h); ``ip3_input`` = Delta_IP3 * J_in(t) in uM/s.

        dIP3/dt = (IP3_0 - IP3) / tau_IP3 + Delta_IP3 J_in(t)
        dCa/dt  = J_chan - J_pump + J_leak
        J_chan  = r v_IP3R m_inf^3 n_inf^3 h^3 (Ca_ER - Ca),  J_leak = r v_L (Ca_ER - Ca)
        J_pump  = v_SERCA Ca^2 / (K_SERCA^2 + Ca^2),  Ca_ER = (Ca_tot - Ca) / r
        m_inf   = IP3 / (IP3 + Kd_IP3_1),  n_inf = Ca / (Ca + Kd_act)
        dh/dt   = alpha (1 - h) - beta h,  alpha = k_IP3R Kd_inh (IP3 + Kd_IP3_1) / (IP3 + Kd_IP3_2),
                  beta = k_IP3R Ca
    """
    ip3, ca, h = state
    ca_er = (p.ca_total - ca) / p.er_ratio
    m_inf = ip3 / (ip3 + p.kd_ip3_1)
    n_inf = ca / (ca + p.kd_activation)
    gradient = ca_er - ca
    open_share = m_inf * n_inf * h
    j_chan = p.er_ratio * p.v_ip3r * (open_share * open_share * open_share) * gradient  # x*x*x: numpy's ** 3 is pow()
    j_leak = p.er_ratio * p.v_leak * gradient
    j_pump = p.v_serca * ca**2 / (p.k_serca**2 + ca**2)
    alpha = p.k_ip3r * p.kd_inhibition * (ip3 + p.kd_ip3_1) / (ip3 + p.kd_ip3_2)
    beta = p.k_ip3r * ca
    return LiRinzelState((p.ip3_rest - ip3) / p.tau_ip3 + ip3_input, j_chan - j_pump + j_leak,
                         alpha * (1 - h) - beta * h)


def _rk4_step(state: LiRinzelState, ip3_input, p: LiRinzelParameters, dt: float) -> LiRinzelState:
    def shifted(base, slope, factor):
        return LiRinzelState(*(x + factor * dx for x, dx in zip(base, slope)))

    k1 = li_rinzel_rates(state, ip3_input, p)
    k2 = li_rinzel_rates(shifted(state, k1, dt / 2), ip3_input, p)
    k3 = li_rinzel_rates(shifted(state, k2, dt / 2), ip3_input, p)
    k4 = li_rinzel_rates(shifted(state, k3, dt), ip3_input, p)
    return LiRinzelState(*(x + dt / 6 * (a + 2 * b + 2 * c + d) for x, a, b, c, d in zip(state, k1, k2, k3, k4)))


def integrate_li_rinzel(ip3_input: torch.Tensor, interval_s: float, *,
                        parameters: LiRinzelParameters = LiRinzelParameters(), step_s: float = 0.025,
                        initial: LiRinzelState | None = None) -> LiRinzelState:
    """Fixed-step RK4, vectorised over every leading dimension.

    ``ip3_input`` (..., T) is held constant over T consecutive intervals of ``interval_s`` seconds (one
    token each); returns the state at the end of every interval, each (..., T), float64. Default initial
    state: IP3_0, Ca and h of the reference parameter set.
    """
    interval_s = check_float("interval_s", interval_s, minimum=0.0, strict=True)
    step_s = check_float("step_s", step_s, minimum=0.0, strict=True)
    # numpy inside the loop: the states are small (seeds x sequences) and every step is about a hundred
    # elementwise operations, where numpy's call costs a fifth of torch's; the same float64 operations as torch
    ip3_input = ip3_input.detach().double().numpy()
    batch = ip3_input.shape[:-1]
    if initial is None:
        initial = LiRinzelState(*(torch.full(batch, value, dtype=torch.float64) for value in
                                  (parameters.ip3_rest, parameters.ca_initial, parameters.h_initial)))
    state = LiRinzelState(*(np.array(np.broadcast_to(x.detach().double().numpy(), batch)) for x in initial))
    substeps = max(1, int(math.ceil(interval_s / step_s - 1e-9)))
    dt = interval_s / substeps
    trace = []
    for t in range(ip3_input.shape[-1]):
        drive = ip3_input[..., t]
        for _ in range(substeps):
            state = _rk4_step(state, drive, parameters, dt)
        trace.append(state)
    return LiRinzelState(*(torch.from_numpy(np.stack(parts, -1)) for parts in zip(*trace)))


def ip3_input_for(ip3_level: float, parameters: LiRinzelParameters = LiRinzelParameters()) -> float:
    """Delta_IP3 J (uM/s) that holds IP3 at ``ip3_level`` at steady state: (IP3 - IP3_0) / tau_IP3."""
    ip3_level = check_float("ip3_level", ip3_level, minimum=parameters.ip3_rest)
    return (ip3_level - parameters.ip3_rest) / parameters.tau_ip3


def li_rinzel_warm_state(ip3_level: float, warmup_s: float, *, parameters: LiRinzelParameters = LiRinzelParameters(),
                         step_s: float = 0.05) -> LiRinzelState:
    """The state after ``warmup_s`` seconds of a constant drive holding IP3 at ``ip3_level`` (from rest):
    the astrocyte has been seeing typical input before the sequence starts. Scalar tensors."""
    warmup_s = check_float("warmup_s", warmup_s, minimum=0.0, strict=True)
    n_steps = max(1, int(math.ceil(warmup_s / step_s)))
    drive = torch.full((1, n_steps), ip3_input_for(ip3_level, parameters), dtype=torch.float64)
    final = integrate_li_rinzel(drive, warmup_s / n_steps, parameters=parameters, step_s=step_s)
    return LiRinzelState(*(x[0, -1] for x in final))


def li_rinzel_divisor(response: torch.Tensor, ip3_level: float, *, token_interval_s: float = TOKEN_INTERVAL_S,
                      parameters: LiRinzelParameters = LiRinzelParameters(), warm_state: LiRinzelState | None = None,
                      warmup_s: float = 30.0, step_s: float = 0.025) -> torch.Tensor:
    """Ca2+ of a Li-Rinzel astrocyte whose IP3 production follows a_t, as the divisor.

    J_in = a_t / median(a_t) (1 at a typical token) and Delta_IP3 is set so that a sustained typical drive
    holds IP3 at ``ip3_level`` (uM): below ~0.37 graded, 0.37-0.7 oscillating, above saturating. Each
    token lasts ``token_interval_s``; the divisor is a_med Ca_t / median_t(Ca_t) (matched at the median, as
    for the saturating divisor), with Ca_t read at the end of token t.
    """
    median = response.median(dim=-1, keepdim=True).values
    drive = response.clamp_min(0.0) / median
    if warm_state is None:
        warm_state = li_rinzel_warm_state(ip3_level, warmup_s, parameters=parameters)
    ca = integrate_li_rinzel(drive * ip3_input_for(ip3_level, parameters), token_interval_s, parameters=parameters,
                             step_s=step_s, initial=warm_state).ca
    return median * ca / ca.median(dim=-1, keepdim=True).values


# --------------------------------------------------------------------------------------------------------
# 4. Noise at the measured level
# --------------------------------------------------------------------------------------------------------

def noise_factors(shape: Sequence[int], snr: float, generator: torch.Generator,
                  pool: torch.Tensor | None = None) -> torch.Tensor:
    """Mean-1 log-normal factors with coefficient of variation 1/snr: exp(s z - s^2/2), s^2 = log(1 + snr^-2).

    z is standard normal, or resampled from ``pool`` (standardised baseline residuals of real recordings,
    mean 0, SD 1), which keeps the real noise's shape and tails. Positive, because a concentration is.
    """
    snr = check_float("snr", snr, minimum=0.0, strict=True)
    sigma = math.sqrt(math.log1p(snr**-2))
    if pool is None:
        z = torch.randn(*shape, generator=generator, dtype=torch.float64)
    else:
        index = torch.randint(pool.numel(), tuple(shape), generator=generator)
        z = pool.double().reshape(-1)[index]
    return torch.exp(sigma * z - 0.5 * sigma**2)


# --------------------------------------------------------------------------------------------------------
# 5. Independent microdomains with a whole-cell threshold
# --------------------------------------------------------------------------------------------------------

def microdomain_parts(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, n_domains: int,
                      causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Drive and response of each domain, (..., D, T, d_v) and (..., D, T): process i belongs to domain
    i mod D (features are i.i.d., so this is a random assignment; sizes differ by at most one). Processes are
    padded with silent ones (phi = 0) to a multiple of D, which changes no sum."""
    m = phi_q.shape[-1]
    if not 1 <= n_domains <= m:
        raise fail("n_domains", f"an integer between 1 and m = {m}", n_domains)
    pad = -m % n_domains

    def split(phi):  # (..., N, m) -> (..., N, m / D, D)
        return torch.nn.functional.pad(phi, (0, pad)).unflatten(-1, (-1, n_domains))

    q_parts, k_parts = split(phi_q), split(phi_k)
    if not causal:
        hebbian = torch.einsum("...nv,...nsd->...vsd", v, k_parts)
        presynaptic = k_parts.sum(-3)  # (..., m / D, D)
        drive = torch.einsum("...vsd,...tsd->...dtv", hebbian, q_parts)
        response = torch.einsum("...sd,...tsd->...dt", presynaptic, q_parts)
        return drive, response
    mask = causal_mask(phi_q.shape[-2], phi_k.shape[-2])
    weights = torch.einsum("...tsd,...nsd->...dtn", q_parts, k_parts) * mask
    return weights @ v.unsqueeze(-3), weights.sum(-1)


def microdomain_output(domain_drive: torch.Tensor, domain_response: torch.Tensor,
                       whole_cell_fraction: float | None = WHOLE_CELL_FRACTION,
                       activity_ratio: float = 1.0) -> torch.Tensor:
    """Each domain divides its own synapses; the output neuron averages them: y_t = mean_d drive_d / a_d.
    With ``whole_cell_fraction``, a domain is active at token t when a_(d,t) exceeds ``activity_ratio`` x
    its mean over the sequence, and where at least that fraction of domains is active the whole cell
    responds: y_t = sum_d drive_d / sum_d a_d (the ideal division). None: domains are always independent."""
    local = (domain_drive / domain_response.unsqueeze(-1)).mean(-3)
    if whole_cell_fraction is None:
        return local
    whole = domain_drive.sum(-3) / domain_response.sum(-2).unsqueeze(-1)
    threshold = activity_ratio * domain_response.mean(-1, keepdim=True)
    active = (domain_response > threshold).double().mean(-2)  # fraction of domains active, (..., T)
    return torch.where((active >= whole_cell_fraction).unsqueeze(-1), whole, local)


# --------------------------------------------------------------------------------------------------------
# 6. Heterogeneous per-process gains
# --------------------------------------------------------------------------------------------------------

def lognormal_gains(m: int, sigma: float, coupling: float, generator: torch.Generator) -> torch.Tensor:
    """Per-process gains: log-normal exp(sigma z_i), divided by their mean over the cell's m processes (so
    only the heterogeneity is tested, not a global gain error), then mixed with that mean by ``coupling``
    (0: independent processes; 1: fully coupled, all equal), a mean-field stand-in for gap-junction and
    Ca2+-wave coupling between processes."""
    sigma = check_float("sigma", sigma, minimum=0.0)
    coupling = check_float("coupling", coupling, minimum=0.0, maximum=1.0)
    gains = torch.exp(sigma * torch.randn(m, generator=generator, dtype=torch.float64))
    gains = gains / gains.mean()
    return (1 - coupling) * gains + coupling


# --------------------------------------------------------------------------------------------------------
# Variants: one frozen dataclass per idealisation, dispatched by apply_variant
# --------------------------------------------------------------------------------------------------------

def _name(prefix: str, **settings) -> str:
    return prefix + "".join(f"_{key}{value:g}" if isinstance(value, float) else f"_{key}{value}"
                            for key, value in settings.items())


@dataclass(frozen=True)
class Ideal:
    """The paper's circuit: exact, instantaneous, noiseless, linear division."""
    family: str = "ideal"
    level: str = "ideal"

    @property
    def name(self) -> str:
        return "ideal"


@dataclass(frozen=True)
class NoAstrocyte:
    """Null: Hebbian read-out with one gain per sequence (the mean a_t), no per-query astrocyte."""
    family: str = "no_astrocyte"
    level: str = "null"

    @property
    def name(self) -> str:
        return "no_astrocyte"


@dataclass(frozen=True)
class Saturating:
    hill_n: float = 2.0
    ec50_ratio: float = 1.0
    level: str = "stress"
    family: str = "saturating"

    def __post_init__(self):
        check_float("hill_n", self.hill_n, minimum=0.0, strict=True)
        check_float("ec50_ratio", self.ec50_ratio, minimum=0.0, strict=True)

    @property
    def name(self) -> str:
        return _name("saturating", n=float(self.hill_n), ec50x=float(self.ec50_ratio))


@dataclass(frozen=True)
class SlowDivisor:
    rise_s: float = 0.55
    decay_s: float = 0.35
    shape: str = "event"
    token_interval_s: float = TOKEN_INTERVAL_S
    level: str = "stress"
    family: str = "slow"

    def __post_init__(self):
        rise_decay_kernel(self.rise_s, self.decay_s, self.token_interval_s, self.shape)  # validates

    @property
    def name(self) -> str:
        return _name("slow", shape=self.shape, rise=float(self.rise_s), decay=float(self.decay_s))


@dataclass(frozen=True)
class LiRinzel:
    ip3_level: float = 0.5
    token_interval_s: float = TOKEN_INTERVAL_S
    warmup_s: float = 30.0
    step_s: float = 0.025
    parameters: LiRinzelParameters = LiRinzelParameters()
    level: str = "stress"
    family: str = "li_rinzel"

    def __post_init__(self):
        ip3_input_for(self.ip3_level, self.parameters)
        for name in ("token_interval_s", "warmup_s", "step_s"):
            check_float(name, getattr(self, name), minimum=0.0, strict=True)

    @property
    def name(self) -> str:
        return _name("li_rinzel", ip3=float(self.ip3_level))


@dataclass(frozen=True)
class WholeCellNoise:
    snr: float = MEASURED_EVENT_SNR
    level: str = "stress"
    family: str = "noise_whole_cell"

    def __post_init__(self):
        check_float("snr", self.snr, minimum=0.0, strict=True)

    @property
    def name(self) -> str:
        return _name(self.family, snr=float(self.snr))


@dataclass(frozen=True)
class BaselineNoise(WholeCellNoise):
    """Whole-cell noise whose CV is derived from the imaging baseline, not from single events: the divisor is
    the astrocyte's summed Ca2+, read against its resting level, so its relative noise is the baseline noise
    SD in dF/F (``noise_sd``, about 1 %, calibrated on the culture traces) times ``scale``, an assumption swept
    around 1 (per-token multiplicative, as :class:`WholeCellNoise`, with snr = 1 / CV)."""
    snr: float = 1.0 / BASELINE_NOISE_SD
    scale: float = 1.0
    noise_sd: float = BASELINE_NOISE_SD

    @classmethod
    def derived(cls, scale: float, noise_sd: float = BASELINE_NOISE_SD, level: str = "stress") -> "BaselineNoise":
        scale = check_float("divisor_noise_scales", scale, minimum=0.0, strict=True)
        noise_sd = check_float("noise_sd", noise_sd, minimum=0.0, strict=True)
        return cls(snr=1.0 / (scale * noise_sd), scale=scale, noise_sd=noise_sd, level=level)

    @property
    def name(self) -> str:
        return _name("noise_whole_cell_baseline", x=float(self.scale))


@dataclass(frozen=True)
class ProcessNoise(WholeCellNoise):
    """The same noise drawn for every process (hidden unit) apart; variants dispatch on ``family``."""
    family: str = "noise_per_process"


@dataclass(frozen=True)
class Microdomains:
    n_domains: int = 8
    whole_cell_fraction: float | None = WHOLE_CELL_FRACTION
    activity_ratio: float = 1.0
    level: str = "stress"
    family: str = "microdomains"

    def __post_init__(self):
        check_int("n_domains", self.n_domains, minimum=1)
        if self.whole_cell_fraction is not None:
            check_float("whole_cell_fraction", self.whole_cell_fraction, minimum=0.0, maximum=1.0)
        check_float("activity_ratio", self.activity_ratio, minimum=0.0, strict=True)

    @property
    def name(self) -> str:
        threshold = "none" if self.whole_cell_fraction is None else f"{self.whole_cell_fraction:g}"
        return _name("microdomains", d=self.n_domains, wholecell=threshold)


@dataclass(frozen=True)
class HeterogeneousGains:
    sigma: float = 0.5
    coupling: float = 0.0
    level: str = "stress"
    family: str = "heterogeneous_gains"

    def __post_init__(self):
        check_float("sigma", self.sigma, minimum=0.0)
        check_float("coupling", self.coupling, minimum=0.0, maximum=1.0)

    @property
    def name(self) -> str:
        return _name("gains", sigma=float(self.sigma), coupling=float(self.coupling))


VARIANT_TYPES = (Ideal, NoAstrocyte, Saturating, SlowDivisor, LiRinzel, WholeCellNoise, ProcessNoise,
                 Microdomains, HeterogeneousGains)
FAMILIES = tuple(cls.family for cls in (cls() for cls in VARIANT_TYPES))
PER_PROCESS = ("noise_per_process", "microdomains", "heterogeneous_gains")


def variant_settings(variant) -> dict:
    """The variant's parameters as a flat dict (for the tables)."""
    return {item.name: getattr(variant, item.name) for item in fields(variant)
            if item.name not in ("family", "level", "parameters")}


def apply_variant(variant, pieces: CircuitPieces, generators: Sequence[torch.Generator] = (),
                  noise_pool: torch.Tensor | None = None, warm_state: LiRinzelState | None = None) -> torch.Tensor:
    """The output y_t of the circuit with one realistic astrocyte, float64.

    ``generators``: one per index of the leading (seed) dimension of the pieces, for the random variants
    (noise, gains), so every seed's draws are its own whatever the batching. ``warm_state``: a precomputed
    :func:`li_rinzel_warm_state` (else computed here).
    """
    drive, response = pieces.drive, pieces.response
    family = variant.family
    if family == "ideal":
        return divide(drive, response)
    if family == "no_astrocyte":
        return divide(drive, response.mean(-1, keepdim=True).expand_as(response))
    if family == "saturating":
        return divide(drive, saturating_divisor(response, variant.hill_n, variant.ec50_ratio))
    if family == "slow":
        kernel = rise_decay_kernel(variant.rise_s, variant.decay_s, variant.token_interval_s, variant.shape)
        return divide(drive, slow_divisor(response, kernel))
    if family == "li_rinzel":
        if warm_state is None:
            warm_state = li_rinzel_warm_state(variant.ip3_level, variant.warmup_s, parameters=variant.parameters)
        divisor = li_rinzel_divisor(response, variant.ip3_level, token_interval_s=variant.token_interval_s,
                                    parameters=variant.parameters, warm_state=warm_state, step_s=variant.step_s)
        return divide(drive, divisor)
    if family == "noise_whole_cell":
        factors = _per_seed(generators, response.shape,
                            lambda shape, g: noise_factors(shape, variant.snr, g, noise_pool))
        return divide(drive, response * factors)
    if pieces.phi_q is None:
        raise fail("pieces", f"per-process features for the '{family}' variant (per_process=True)", None)
    phi_q, phi_k, v, causal = pieces.phi_q, pieces.phi_k, pieces.v, pieces.causal
    if family == "noise_per_process":
        factors = _per_seed(generators, phi_q.shape, lambda shape, g: noise_factors(shape, variant.snr, g, noise_pool))
        return divide(*hebbian_parts(phi_q, phi_k, v, causal, factors))
    if family == "heterogeneous_gains":
        m = phi_q.shape[-1]
        gains = _per_seed(generators, phi_q.shape[:-2] + (1, m),
                          lambda shape, g: lognormal_gains(m, variant.sigma, variant.coupling, g).expand(shape))
        return divide(*hebbian_parts(phi_q, phi_k, v, causal, gains))
    if family == "microdomains":
        parts = microdomain_parts(phi_q, phi_k, v, variant.n_domains, causal)
        return microdomain_output(*parts, variant.whole_cell_fraction, variant.activity_ratio)
    raise fail("variant", f"a variant of a family among {list(FAMILIES)}", variant)


def _per_seed(generators: Sequence[torch.Generator], shape, draw) -> torch.Tensor:
    """Random tensor of ``shape`` whose slice i along dim 0 comes from generators[i]."""
    shape = tuple(shape)
    if len(generators) != shape[0]:
        raise fail("generators", f"one generator per seed ({shape[0]})", len(generators))
    return torch.stack([draw(shape[1:], generator) for generator in generators])


def realistic_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor, variant, *,
                        feature: str = "positive", causal: bool = False, seed: int = 0,
                        noise_pool: torch.Tensor | None = None) -> torch.Tensor:
    """One realistic astrocyte on one head: q, k (..., N, d), v (..., N, d_v), projection (rows, d).
    Random draws (noise, gains) come from ``seed``. Returns y (..., N, d_v), float64; finite or an InputError
    (:mod:`astrostats.circuits.finite`; a retry in float64 draws the same numbers, from the same seed)."""
    from astrostats.circuits.finite import finite_result

    if not isinstance(variant, VARIANT_TYPES):
        raise fail("variant", f"an instance of one of {[cls.__name__ for cls in VARIANT_TYPES]}", variant)
    check_int("seed", seed, minimum=0)
    return finite_result("realistic_attention",
                         lambda *x: _realistic(*x, variant, feature, causal, seed, noise_pool),
                         (q, k, v, projection), lambda result, dtype: result)


def _realistic(q, k, v, projection, variant, feature, causal, seed, noise_pool):
    """:func:`realistic_attention` on inputs of one dtype."""
    pieces = circuit_pieces(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), projection, feature, causal,
                            per_process=variant.family in PER_PROCESS)
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    return apply_variant(variant, pieces, [generator], noise_pool)[0]
