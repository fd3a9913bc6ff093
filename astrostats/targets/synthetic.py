"""Synthetic heads: Gaussian q, k, v with controlled length N, head size d, query/key norm and logit spread.

Two knobs, set apart because they do different things: the query/key norm r (|q|, |k| about r) sets the
positive-feature error constant, which grows like exp(|q + k|^2); the logit spread s (standard deviation of
q·k) sets how peaked attention is (its entropy). q and k have i.i.d. N(0, r^2 / d_eff) entries in the first
d_eff of the d dimensions, so the logit SD is about r^2 / sqrt(d_eff): d_eff = d (isotropic) gives the
smallest spread a norm allows (near-uniform attention for r <= 2 at d = 64), d_eff = 1 the largest (r^2).
d_eff = round((r^2 / s)^2), clipped to [1, d]. Values are N(0, 1). Defaults are the paper's d_head = 64,
N = 197.

Named settings (HEADS; entropies at N = 197, d = 64, of a maximum log 197 = 5.28 nats):

* near_uniform_small_norm  r = 0.5, isotropic (logit SD 0.03, entropy 5.28)        formerly "diffuse"
* near_uniform_unit_norm   r = 1, isotropic (logit SD 0.13, entropy 5.28)          formerly "typical"
* near_uniform_large_norm  r = 2, isotropic (logit SD 0.5, entropy 5.16)           formerly "peaked",
                           a misnomer: near-uniform attention with a large norm
* peaked                   r = 2, logit SD 4 (d_eff = 1; entropy 3.0): the same norm, truly peaked
* real_like                the real heads' median norm r = 2.78 and entropy (3.55 nats, 0.67 of log N;
                           REAL_HEADS below): logit SD 2.0 (d_eff = 15)

"diffuse" and "typical" are still accepted (old specs keep running) and label their rows with the new names;
"peaked" now means what it says.
"""
from __future__ import annotations

import math

import numpy as np
import torch


from astrostats.targets.base import TargetBatch
from astrostats.validation import check_float, check_int, fail
from astrostats.seeding import name_code, seed_sequence, torch_generator

#: medians over every head of each real model (scaled q and k, so q·k is the logit), measured once on
#: 2026-12-01 from targets.models.load(name, n_sequences=4, n_tokens=197) and targets_of(loaded, [], []) (every
#: layer and head; the quantities of the real_heads study's head_stats): qk_norm = median sqrt(|q| |k|),
#: logit_sd = median per-sequence SD of the logits, entropy = median mean attention entropy (nats), of log N
REAL_HEADS = {"vit": {"heads": 16, "n_tokens": 50, "d_head": 16, "qk_norm": 1.81, "logit_sd": 1.49, "entropy": 3.10},
              "minilm": {"heads": 72, "n_tokens": 197, "d_head": 32, "qk_norm": 2.78, "logit_sd": 1.61, "entropy": 3.55},
              "smollm2": {"heads": 270, "n_tokens": 197, "d_head": 64, "qk_norm": 5.55, "logit_sd": 2.55, "entropy": 1.90}}
#: real_like: the median over the three models of their median norm (2.78, MiniLM's) and a logit SD of 2.0
#: (d_eff = 15), chosen so that the mean entropy at N = 197 is 3.55 nats: the median over the models of the
#: entropy as a share of log N (ViT 0.79, MiniLM 0.67, SmolLM2 0.36). Gaussian logits need a wider spread than
#: real ones (median 1.61) for the same entropy: real heads attend strongly to a few tokens.
REAL_LIKE = (sorted(head["qk_norm"] for head in REAL_HEADS.values())[1], 2.0)
HEADS: dict[str, tuple[float, float | None]] = {
    "near_uniform_small_norm": (0.5, None),
    "near_uniform_unit_norm": (1.0, None),
    "near_uniform_large_norm": (2.0, None),
    "peaked": (2.0, 4.0),
    "real_like": REAL_LIKE,
}
FORMER_NAMES = {"diffuse": "near_uniform_small_norm", "typical": "near_uniform_unit_norm"}
LOGIT_SCALES = {**{name: norm for name, (norm, _) in HEADS.items()}, **{old: HEADS[new][0] for old, new in FORMER_NAMES.items()}}


def head_setting(logit_scale: str | float, logit_sd: float | None = None) -> tuple[str, float, float | None]:
    """(label, query/key norm r, logit SD or None for isotropic) for a named setting or an explicit norm."""
    if isinstance(logit_scale, str):
        name = FORMER_NAMES.get(logit_scale, logit_scale)
        if name not in HEADS:
            raise fail("logit_scale", f"one of {list(HEADS) + list(FORMER_NAMES)} or a positive number", logit_scale)
        if logit_sd is not None:
            raise fail("logit_sd", "none with a named setting (it fixes the spread)", logit_sd)
        norm, spread = HEADS[name]
        return name, norm, spread
    norm = check_float("logit_scale", logit_scale, minimum=0.0, strict=True)
    if logit_sd is None:
        return f"r={norm:g}", norm, None
    spread = check_float("logit_sd", logit_sd, minimum=0.0, strict=True)
    return f"r={norm:g},sd={spread:g}", norm, spread


def qk_norm(logit_scale: str | float) -> float:
    """The query/key norm r for a named setting or an explicit positive number."""
    return head_setting(logit_scale)[1]


def effective_dim(norm: float, logit_sd: float | None, d_head: int) -> int:
    """The dimensions q and k occupy: d for isotropic heads, else round((r^2 / s)^2) within [1, d]."""
    if logit_sd is None:
        return d_head
    return int(min(d_head, max(1, round((norm * norm / logit_sd) ** 2))))


def _draw(generator, n_sequences, n_tokens, d, scale, dtype, occupied=None):
    x = torch.randn(n_sequences, n_tokens, d, generator=generator, dtype=torch.float64).mul(scale)
    if occupied is not None and occupied < d:
        x[..., occupied:] = 0.0
    return x.to(dtype)


def synthetic_head(*, n_sequences: int = 8, n_tokens: int = 197, d_head: int = 64, logit_scale="near_uniform_unit_norm",
                   logit_sd: float | None = None, seed: int = 0, causal: bool = False, dtype=torch.float32) -> TargetBatch:
    """A batch of synthetic sequences for one head, reproducible from (seed, N, d, norm, logit SD)."""
    n_sequences = check_int("n_sequences", n_sequences, minimum=1)
    n_tokens = check_int("n_tokens", n_tokens, minimum=1)
    d_head = check_int("d_head", d_head, minimum=1)
    label, r, spread = head_setting(logit_scale, logit_sd)
    occupied = effective_dim(r, spread, d_head)
    key = repr(r) if spread is None else repr((r, spread))  # every distinct setting its own draws (isotropic: as before)
    entropy = seed_sequence(check_int("seed", seed, minimum=0), n_tokens, d_head, name_code(key))
    gen_main, gen_alt = (torch_generator(s) for s in entropy.spawn(2))
    std = r / np.sqrt(occupied)
    q = _draw(gen_main, n_sequences, n_tokens, d_head, std, dtype, occupied)
    k = _draw(gen_main, n_sequences, n_tokens, d_head, std, dtype, occupied)
    v = _draw(gen_main, n_sequences, n_tokens, d_head, 1.0, dtype)
    alternative = (_draw(gen_alt, n_sequences, n_tokens, d_head, std, dtype, occupied),
                   _draw(gen_alt, n_sequences, n_tokens, d_head, std, dtype, occupied))
    labels = {"target": "synthetic", "layer": 0, "head": 0, "logit_scale": label, "qk_norm": r,
              "logit_sd": r * r / math.sqrt(occupied), "n_tokens": n_tokens, "d_head": d_head}
    return TargetBatch(labels, q, k, v, causal, tuple(range(n_sequences)), alternative)
