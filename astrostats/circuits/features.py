"""Random feature maps phi with E[phi(x)·phi(y)] = exp(x·y): the circuit's m hidden neurons.

Every map is written as phi(x) = exp(exponent(x)) * oscillation(x) so that the circuit can subtract a
per-sequence (keys) or per-token (queries) maximum of the exponent, which cancels in the astrocyte's
ratio and keeps float32 finite at large logits.

m always counts hidden units (features). The positive and orthogonal maps use m projection rows; the
paired maps (trigonometric: cos and sin; hyperbolic: exp(+w·x) and exp(-w·x)) use m/2 rows, each row
feeding two units, so that every map is compared at the same number of hidden neurons.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from astrostats.validation import check_choice, check_int, check_tensor, fail

FEATURE_MAPS = ("positive", "orthogonal", "trigonometric", "hyperbolic")
PAIRED_MAPS = ("trigonometric", "hyperbolic")
POSITIVE_MAPS = ("positive", "orthogonal")  # phi(x) = exp(w·x - |x|^2/2) / sqrt(m), no oscillating factor


def projection_rows(m: int, feature: str) -> int:
    """Rows of W needed for m hidden units."""
    return m // 2 if feature in PAIRED_MAPS else m


def draw_projection(m: int, d: int, *, feature: str = "positive", seed: int | np.random.SeedSequence = 0,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """W for m hidden units on d-dimensional inputs: i.i.d. N(0, 1) rows, or for ``orthogonal``
    blocks of d orthogonal directions with chi_d-distributed norms (Performer's ORF)."""
    check_choice("feature", feature, FEATURE_MAPS)
    m = check_int("m", m, minimum=1)
    d = check_int("d", d, minimum=1)
    if feature in PAIRED_MAPS and m % 2:
        raise fail("m", f"an even number for the paired '{feature}' map", m)
    rows = projection_rows(m, feature)
    # numpy's float64 normals (PCG64, ziggurat) take half the time of torch's float64 randn
    generator = np.random.default_rng(seed)
    gaussian = torch.from_numpy(generator.standard_normal((rows, d)))
    if feature == "orthogonal":
        blocks = []
        for start in range(0, rows, d):
            block = torch.from_numpy(generator.standard_normal((d, d)))
            orthonormal, triangular = torch.linalg.qr(block)
            # QR's sign convention is not random: fix R's diagonal positive so Q is Haar-distributed
            orthonormal = orthonormal * torch.sign(torch.diagonal(triangular)).unsqueeze(0)
            blocks.append(orthonormal.T[: min(d, rows - start)])
        norms = gaussian.norm(dim=-1, keepdim=True)  # chi_d lengths, as a Gaussian row would have
        gaussian = torch.cat(blocks) * norms
    return gaussian.to(dtype)


def check_projection(projection: torch.Tensor, d: int) -> torch.Tensor:
    check_tensor("projection", projection, min_dim=2)
    if projection.shape[-1] != d:
        raise fail("projection", f"width {d} (the head size of q and k)", tuple(projection.shape))
    return projection


def feature_parts(x: torch.Tensor, projection: torch.Tensor, feature: str,
                  rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """phi(x) = exp(exponent) * oscillation; oscillation is None for the positive maps.

    x: (..., N, d); projection: (..., rows, d) broadcasting against x's batch dims; ``rows``: the rows of the
    whole W when ``projection`` is a tile of it (the 1/sqrt(rows) normalisation is the whole circuit's).
    Returns exponent (..., N, m) or (..., N, 1) and oscillation (..., N, m) or None.
    """
    projected = x @ projection.transpose(-1, -2)
    half_norm = 0.5 * (x * x).sum(-1, keepdim=True)
    rows = projection.shape[-2] if rows is None else rows
    if feature in POSITIVE_MAPS:
        return projected - half_norm - 0.5 * math.log(rows), None
    if feature == "hyperbolic":
        return torch.cat([projected, -projected], -1) - half_norm - 0.5 * math.log(2 * rows), None
    return half_norm - 0.5 * math.log(rows), torch.cat([projected.cos(), projected.sin()], -1)


def random_features(x: torch.Tensor, projection: torch.Tensor, feature: str = "positive",
                    shift: torch.Tensor | None = None) -> torch.Tensor:
    """phi(x) * exp(-shift): the hidden neurons' rates (shift broadcast over tokens and features)."""
    exponent, oscillation = feature_parts(x, projection, feature)
    if shift is not None:
        exponent = exponent - shift
    rates = exponent.exp()
    return rates if oscillation is None else rates * oscillation
