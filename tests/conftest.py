import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


def attention_rounding_bound(q, k, v):
    """Largest difference two correct float implementations of softmax(q k^T) v may show: every logit carries
    a rounding error up to eps (d + |logit|) (a d-term dot product, then the exponential), which moves each
    output by at most that times max|v|; the weighted sum over N tokens adds eps N max|v|; doubled for the
    two implementations."""
    eps = torch.finfo(q.dtype).eps
    logits = (q @ k.transpose(-1, -2)).abs().max()
    return float(2 * eps * (q.shape[-1] + logits + q.shape[-2]) * v.abs().max())


@pytest.fixture
def rounding_bound():
    return attention_rounding_bound


def _gaussian_head(n_seq=3, n=40, d=8, d_v=5, scale=0.3, dtype=torch.float64, seed=0):
    """q, k (n_seq, n, d) with N(0, scale^2) entries and v (n_seq, n, d_v) standard normal, from one seeded
    generator (never the global random state)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_seq, n, d, generator=g, dtype=dtype) * scale
    k = torch.randn(n_seq, n, d, generator=g, dtype=dtype) * scale
    v = torch.randn(n_seq, n, d_v, generator=g, dtype=dtype)
    return q, k, v


@pytest.fixture
def gaussian_head():
    """The shared synthetic head maker: ``gaussian_head(n_seq=3, n=40, d=8, d_v=5, scale=0.3, seed=0)``."""
    return _gaussian_head

