"""One finite-output guarantee for every public circuit and measurement: a finite result or a clear InputError,
never a silent NaN or inf.

The same recipe as the astrocyte circuit's (:func:`astrostats.circuits.astrocyte.astrocyte_attention`):

* inputs of mixed floating dtypes are promoted to their common dtype (float32 with float64: float64), not left
  to a raw torch error;
* half-precision inputs (float16, bfloat16) are computed in float32; their exponentials (exp(q·k) of a few
  tens) overflow there, and every circuit already shifts its exponents by a maximum, so float32 holds them;
* a result that is still not finite (a response that underflows to zero at logits of hundreds, a normaliser
  beyond float32) is computed again in float64;
* beyond that, or when the result does not fit the inputs' dtype once cast back (a Hebbian read-out of size
  exp(q·k) in float16), an InputError says which function, the largest |q·k| and why.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from astrostats.validation import all_finite, fail

HALF = (torch.float16, torch.bfloat16)


def common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The promoted floating dtype of the tensors (their own checks refuse non-floating ones)."""
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def attempts(dtype: torch.dtype) -> list[torch.dtype]:
    """The dtypes to compute in, in order: float32 for half precision (else the dtype itself), then float64."""
    first = torch.float32 if dtype in HALF else dtype
    return list(dict.fromkeys((first, torch.float64)))


def largest_logit(q: torch.Tensor, k: torch.Tensor) -> float:
    return float((q.detach().double() @ k.detach().double().transpose(-1, -2)).abs().max())


def finite_result(name: str, compute: Callable, tensors: tuple, restore: Callable, *, logits: tuple | None = None,
                  reason: str = "logits whose exponentials float64 can hold"):
    """``restore(compute(*tensors cast), dtype)`` for the first computing dtype that gives a finite result, where
    dtype is the tensors' common dtype and ``restore`` casts the output back to it; an InputError naming
    ``name`` when none does. ``logits`` (q, k): what the message reports (default: the first two tensors)."""
    dtype = common_dtype(*tensors)
    for attempt in attempts(dtype):
        result = restore(compute(*(tensor.to(attempt) for tensor in tensors)), dtype)
        if all_finite(result):
            return result
    q, k = logits if logits is not None else tensors[:2]
    raise fail(f"{name}: q, k", f"{reason} (the result is not finite even in float64, or does not fit "
                                f"{str(dtype).replace('torch.', '')})", f"max |q.k| = {largest_logit(q, k):.4g}")


def as_dtype(result, dtype: torch.dtype):
    """A tensor result cast to ``dtype``."""
    return result.to(dtype)


__all__ = ["HALF", "common_dtype", "attempts", "all_finite", "finite_result", "as_dtype"]
