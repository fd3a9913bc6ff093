"""Input checks at the public boundary: one error type whose message names the parameter and the value.

Inner functions trust their inputs; every public entry point calls these first (as scikit-learn's
``check_array`` / ``check_scalar`` do). The CLI turns :class:`InputError` into exit status 2.
"""
from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where tensors are checked: the report and the CLI's parsing need none
    import torch


IDENTIFIER = re.compile(r"\A[A-Za-z][A-Za-z0-9_-]{0,63}\Z")  # \Z, not $: "$" also matches before a final newline
MAX_SEED = 2**32 - 1  # base seeds: numpy's classic range, exact in every table column and seed sequence


class InputError(ValueError):
    """Bad input: the message names the parameter, what was expected and the value received."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fail(name: str, expected: str, value: Any) -> InputError:
    return InputError(f"{name}: expected {expected}, got {_short(value)}")


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise fail(name, "an integer", value)
    value = int(value)
    if minimum is not None and value < minimum:
        raise fail(name, f"an integer >= {minimum}", value)
    if maximum is not None and value > maximum:
        raise fail(name, f"an integer <= {maximum}", value)
    return value


def check_bool(name: str, value: Any) -> bool:
    """True or False itself: a string such as "False" is truthy and would silently mean the opposite."""
    if not isinstance(value, bool):
        raise fail(name, "True or False", value)
    return value


def check_identifier(name: str, value: Any) -> str:
    """A name that becomes part of a file name: a letter, then letters, digits, '_' or '-' (at most 64)."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise fail(name, "a safe identifier (a letter, then letters, digits, '_' or '-'; at most 64 characters)",
                   value)
    return value


def check_int_list(name: str, values: Any, *, minimum: int = 1, maximum: int | None = None) -> tuple[int, ...]:
    """A non-empty list of integers >= minimum (and <= maximum, where given): the m values of a sweep, say."""
    items = None if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) else list(values)
    if not items:
        raise fail(name, f"a non-empty list of integers >= {minimum}", values)
    return tuple(check_int(name, value, minimum=minimum, maximum=maximum) for value in items)


def check_float(name: str, value: Any, *, minimum: float | None = None, strict: bool = False,
                maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise fail(name, "a number", value)
    value = float(value)
    if not math.isfinite(value):
        raise fail(name, "a finite number", value)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise fail(name, f"a number {'>' if strict else '>='} {minimum}", value)
    if maximum is not None and value > maximum:
        raise fail(name, f"a number <= {maximum}", value)
    return value


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" naming the choices closest to a mistyped ``word`` (difflib), or "" when none is
    close; appended to the messages of unknown names (analyses, profiles, parameters)."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(choice) for choice in choices], n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(item) for item in close) + "?)"


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise InputError(str(fail(name, f"one of {choices}", value)) + did_you_mean(value, choices))
    return value


def all_finite(result: Any) -> bool:
    """No NaN or infinity in a tensor, or in any tensor of a tuple or list of them (anything else: True). A sum is
    finite only if every entry is (a NaN or infinity propagates), and summing reads the tensor once without the
    boolean copy isfinite(x).all() makes: 10-20x faster at the circuits' output sizes; a sum that overflows with
    finite entries takes the exact check."""
    import torch

    if isinstance(result, (tuple, list)):
        return all(all_finite(item) for item in result)
    if not isinstance(result, torch.Tensor):
        return True
    tensor = result.detach()
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def check_tensor(name: str, value: Any, *, min_dim: int = 1) -> torch.Tensor:
    """A floating tensor with at least ``min_dim`` dimensions and only finite entries."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise fail(name, "a torch.Tensor", type(value).__name__)
    if not value.is_floating_point():
        raise fail(name, "a floating-point tensor", value.dtype)
    if value.dim() < min_dim:
        raise fail(name, f"a tensor with >= {min_dim} dimensions", tuple(value.shape))
    if not all_finite(value):
        raise fail(name, "finite values (no NaN or inf)", f"tensor of shape {tuple(value.shape)} with non-finite entries")
    return value
