"""The astrocyte circuit and performer-pytorch's FAVOR+ compute the same numbers with a shared projection.

FAVOR+ takes unscaled queries and keys (it multiplies them by d^(-1/4) itself) and adds a regulariser eps
to every feature; with eps = 0 both are y_t = sum_tau v_tau phi(k_tau)·phi(q_t) / sum_tau phi(k_tau)·phi(q_t)
with phi(x) = m^(-1/2) exp(W x - |x|^2 / 2), up to per-token and per-sequence shifts that cancel in the ratio.
Tolerances are torch.testing's defaults for the dtype (rounding only), so any difference in the maths fails.
"""
from __future__ import annotations

import pytest
import torch

from astrostats.circuits.astrocyte import astrocyte_attention
from astrostats.circuits.features import draw_projection
from astrostats.targets.synthetic import synthetic_head

pytestmark = pytest.mark.slow  # performer-pytorch at large m

performer = pytest.importorskip("performer_pytorch.performer_pytorch")


def favor_plus(q, k, v, projection, eps=0.0):
    """performer-pytorch's own kernel and linear attention on scaled (q, k): shapes (S, N, d)."""
    d = q.shape[-1]
    unscale = d ** 0.25  # FAVOR+ applies d^(-1/4) to its inputs
    phi_q = performer.softmax_kernel((q * unscale).unsqueeze(1), projection_matrix=projection, is_query=True,
                                     eps=eps)
    phi_k = performer.softmax_kernel((k * unscale).unsqueeze(1), projection_matrix=projection, is_query=False,
                                     eps=eps)
    return performer.linear_attention(phi_q, phi_k, v.unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("m", [16, 256])
@pytest.mark.parametrize("logit_scale", ["diffuse", "typical"])
def test_same_numbers_as_favor_plus(dtype, m, logit_scale):
    target = synthetic_head(n_sequences=3, n_tokens=50, d_head=16, logit_scale=logit_scale, seed=4, dtype=dtype)
    projection = draw_projection(m, 16, seed=11, dtype=dtype)
    ours = astrocyte_attention(target.q, target.k, target.v, projection=projection)
    theirs = favor_plus(target.q, target.k, target.v, projection)
    torch.testing.assert_close(ours, theirs)


def test_fast_attention_module_with_shared_projection_uses_the_same_features():
    """The module as shipped (eps = 1e-4) with our W as its buffer equals its own functional form."""
    target = synthetic_head(n_sequences=2, n_tokens=40, d_head=16, seed=5)
    projection = draw_projection(64, 16, seed=3)
    module = performer.FastAttention(dim_heads=16, nb_features=64)
    module.projection_matrix.copy_(projection)
    unscale = 16 ** 0.25
    out = module((target.q * unscale).unsqueeze(1), (target.k * unscale).unsqueeze(1), target.v.unsqueeze(1))
    torch.testing.assert_close(out.squeeze(1), favor_plus(target.q, target.k, target.v, projection, eps=1e-4))
