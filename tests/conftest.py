import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


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
