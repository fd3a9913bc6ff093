"""Synthetic heads: Gaussian q, k, v with controlled length N, head size d and logit scale.

q and k have i.i.d. N(0, r^2 / d) entries, so |q| and |k| are about r; the logit q·k then has standard
deviation about r^2 / sqrt(d), and the positive-feature error constant grows like exp(|q + k|^2) ~ exp(2 r^2)
(paper-notes.md). Named scales: diffuse r = 0.5, typical r = 1 (the paper-notes simulation, |q|, |k| about
1), peaked r = 2. Values are N(0, 1). Defaults are the paper's d_head = 64, N = 197.
"""
from __future__ import annotations


import numpy as np
import torch


from astrostats.targets.base import TargetBatch
from astrostats.validation import check_float, check_int, fail
from astrostats.seeding import name_code, seed_sequence, torch_generator

LOGIT_SCALES = {"diffuse": 0.5, "typical": 1.0, "peaked": 2.0}


def qk_norm(logit_scale: str | float) -> float:
    """The query/key norm r for a named scale or an explicit positive number."""
    if isinstance(logit_scale, str):
        if logit_scale not in LOGIT_SCALES:
            raise fail("logit_scale", f"one of {list(LOGIT_SCALES)} or a positive number", logit_scale)
        return LOGIT_SCALES[logit_scale]
    return check_float("logit_scale", logit_scale, minimum=0.0, strict=True)


def _draw(generator, n_sequences, n_tokens, d, scale, dtype):
    return torch.randn(n_sequences, n_tokens, d, generator=generator, dtype=torch.float64).mul(scale).to(dtype)


def synthetic_head(*, n_sequences: int = 8, n_tokens: int = 197, d_head: int = 64, logit_scale="typical",
                   seed: int = 0, causal: bool = False, dtype=torch.float32) -> TargetBatch:
    """A batch of synthetic sequences for one head, reproducible from (seed, N, d, scale)."""
    n_sequences = check_int("n_sequences", n_sequences, minimum=1)
    n_tokens = check_int("n_tokens", n_tokens, minimum=1)
    d_head = check_int("d_head", d_head, minimum=1)
    r = qk_norm(logit_scale)
    entropy = seed_sequence(check_int("seed", seed, minimum=0), n_tokens, d_head, name_code(repr(r)))  # each r its own draws
    gen_main, gen_alt = (torch_generator(s) for s in entropy.spawn(2))
    std = r / np.sqrt(d_head)
    q = _draw(gen_main, n_sequences, n_tokens, d_head, std, dtype)
    k = _draw(gen_main, n_sequences, n_tokens, d_head, std, dtype)
    v = _draw(gen_main, n_sequences, n_tokens, d_head, 1.0, dtype)
    alternative = (_draw(gen_alt, n_sequences, n_tokens, d_head, std, dtype),
                   _draw(gen_alt, n_sequences, n_tokens, d_head, std, dtype))
    labels = {"target": "synthetic", "layer": 0, "head": 0,
              "logit_scale": logit_scale if isinstance(logit_scale, str) else f"r={r:g}",
              "qk_norm": r, "n_tokens": n_tokens, "d_head": d_head}
    return TargetBatch(labels, q, k, v, causal, tuple(range(n_sequences)), alternative)
