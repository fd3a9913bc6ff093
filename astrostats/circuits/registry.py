"""Circuits by name: one protocol for every circuit the audit can run, built in or brought by a user.

A circuit maps (q, k, v) to an approximation of softmax attention. It is called as::

    circuit(q, k, v, *, m, seed, causal) -> CircuitResult(output, log_normaliser)

with q, k (S, N, d) already scaled so that q·k is the logit (the library's convention, see
:mod:`astrostats.circuits.attention`), v (S, N, d_v); ``m`` hidden units and an integer ``seed`` for a circuit
with random features (both None for a fixed one). ``log_normaliser`` is the log of the circuit's estimate of
softmax's normaliser sum_j exp(q_t·k_j) (float64), or None where the circuit has no such estimate.

Three ways to name one, all resolved by :func:`get_circuit`:

* a built-in or in-process registration (the :func:`register_circuit` decorator);
* a third-party package's entry point in the group ``astrostats.circuits``;
* ``"package.module:callable"``, imported on demand (a :class:`Circuit`, or a plain function: with ``m`` and
  ``seed`` keywords it is taken as a random-feature circuit, else as a fixed one).

Work inside an analysis process or a Dask worker resolves names again there: a circuit registered only in a
notebook's session is not visible to them; an entry point or a module path is.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from astrostats.constants import DEFAULT_CIRCUIT
from astrostats.validation import InputError, all_finite, check_bool, check_choice, check_int, fail

ENTRY_POINT_GROUP = "astrostats.circuits"
#: the feature-map label of a circuit that brings its own hidden units (not one of FEATURE_MAPS)
NATIVE_FEATURES = "native"


class CircuitResult(NamedTuple):
    """What a circuit returns: its output (S, N, d_v) and, where it has one, its log normaliser (S, N)."""

    output: torch.Tensor
    log_normaliser: torch.Tensor | None = None


@dataclass(frozen=True)
class Circuit:
    """A named circuit: its function, whether it has random hidden units, and what it costs a brain.

    ``resources(m=, d=, d_v=, n_tokens=, fan_in=)`` returns the counted resources (hidden neurons, cells,
    synapses: see :mod:`astrostats.circuits.resources`) or is None where the circuit declares none (the resource
    comparison then says so instead of guessing). ``feature_maps`` lists the feature maps it can run with, its
    own first. ``with_projection(q, k, v, projection, feature, causal)``, where present, runs it on hidden units
    drawn by the caller: the runner's batched fast path, and the way several circuits share one draw.
    """

    name: str
    function: Callable
    random_features: bool
    description: str = ""
    resources: Callable | None = None
    feature_maps: tuple[str, ...] = (NATIVE_FEATURES,)
    with_projection: Callable | None = None
    #: a normaliser made of cells of at most ``fan_in`` inputs (keyword fan_in): "" none, "count" the limit
    #: changes only its cell count, "output" it changes the output too (a pool that sees part of the units)
    fan_in_changes: str = ""
    one_unit_per_token: bool = False  # m counts stored tokens (at most N), no random draw
    #: output and normaliser are sums over hidden units (y = sum_i H_i phi_i / sum_i g_i phi_i): circuits of
    #: independent blocks of units combine exactly into a larger one (how the largest m are measured)
    units_add_up: bool = False

    @property
    def primary_feature_map(self) -> str:
        return self.feature_maps[0] if self.random_features else "none"

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, m: int | None = None,
                 seed: int | None = None, causal: bool = False, **options) -> CircuitResult:
        check_bool("causal", causal)
        keywords = dict(options)
        if self.random_features or self.one_unit_per_token:
            keywords["m"] = check_int("m", m, minimum=1)
        if self.random_features:
            keywords["seed"] = check_int("seed", seed, minimum=0)
        return checked_result(self.name, self.function(q, k, v, causal=causal, **keywords), q, v)


def checked_result(name: str, result, q: torch.Tensor, v: torch.Tensor) -> CircuitResult:
    """A circuit's return value as a CircuitResult of the right shape, finite: a third-party circuit that returns
    the wrong thing is named, never averaged into a table as NaN."""
    if isinstance(result, torch.Tensor):
        result = CircuitResult(result)
    if not isinstance(result, tuple) or not 1 <= len(result) <= 2:
        raise fail(f"circuit {name!r}", "a CircuitResult(output, log_normaliser) or an output tensor",
                   type(result).__name__)
    output, log_normaliser = (tuple(result) + (None,))[:2]
    expected = (*q.shape[:-1], v.shape[-1])
    if not isinstance(output, torch.Tensor) or tuple(output.shape[-len(expected):]) != expected:
        raise fail(f"circuit {name!r}: output", f"a tensor of shape (..., {', '.join(map(str, expected))})",
                   getattr(output, "shape", type(output).__name__))
    if not all_finite(output):
        raise fail(f"circuit {name!r}: output", "finite values", "NaN or infinity")
    if log_normaliser is not None and (not isinstance(log_normaliser, torch.Tensor)
                                       or tuple(log_normaliser.shape[-len(expected) + 1:]) != expected[:-1]):
        raise fail(f"circuit {name!r}: log_normaliser", f"None or a tensor of shape (..., {expected[-2]})",
                   getattr(log_normaliser, "shape", type(log_normaliser).__name__))
    return CircuitResult(output, log_normaliser)


_REGISTRY: dict[str, Circuit] = {}


def register_circuit(name: str, *, random_features: bool, description: str = "", resources: Callable | None = None,
                     feature_maps: tuple[str, ...] = (NATIVE_FEATURES,), with_projection: Callable | None = None,
                     fan_in_changes: str = "", one_unit_per_token: bool = False, units_add_up: bool = False):
    """Decorator: register ``function`` as the circuit ``name`` and return the :class:`Circuit`.

    >>> import torch
    >>> @register_circuit("doc_mean_values", random_features=False, description="mean of the values")
    ... def mean_values(q, k, v, *, causal):
    ...     return v.mean(-2, keepdim=True).expand(*q.shape[:-1], v.shape[-1])
    >>> get_circuit("doc_mean_values")(torch.ones(1, 3, 2), torch.ones(1, 3, 2), torch.ones(1, 3, 4)).output.shape
    torch.Size([1, 3, 4])
    """
    check_bool("random_features", random_features)
    check_choice("fan_in_changes", fan_in_changes, ("", "count", "output"))
    if not isinstance(name, str) or not name.isidentifier():
        raise fail("name", "a circuit name that is a Python identifier (letters, digits, underscores)", name)

    def decorate(function: Callable) -> Circuit:
        circuit = Circuit(name, function, random_features, description or first_line(function.__doc__), resources,
                          tuple(feature_maps), with_projection, fan_in_changes, one_unit_per_token,
                          units_add_up)
        if name in _REGISTRY and _REGISTRY[name].function is not function:
            raise InputError(f"circuit {name!r} is registered already (by {_REGISTRY[name].function.__module__}); "
                             "choose another name")
        _REGISTRY[name] = circuit
        return circuit

    return decorate


def _entry_points() -> dict:
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _as_circuit(name: str, found, parameter: str = "circuit") -> Circuit:
    """A Circuit from what a module path or entry point gave: a Circuit, or a plain function."""
    if isinstance(found, Circuit):
        return found
    if not callable(found):
        raise fail(parameter, "a Circuit or a callable (q, k, v, *, m, seed, causal)", f"{name} -> {type(found).__name__}")
    try:
        keywords = inspect.signature(found).parameters
    except (TypeError, ValueError):
        keywords = {}
    positional = [p for p in keywords.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3 or "causal" not in keywords:  # refused before it is ever called
        raise fail(parameter, "a circuit function (q, k, v, *, causal) or (q, k, v, *, m, seed, causal)",
                   f"{name} with parameters ({', '.join(keywords)})")
    return Circuit(name, found, random_features={"m", "seed"} <= set(keywords), description=first_line(found.__doc__))


def first_line(text: str | None) -> str:
    """A docstring's first paragraph on one line: a circuit's description where none is given."""
    return " ".join((text or "").strip().split("\n\n")[0].split())


def _import_path(path: str, parameter: str) -> Circuit:
    module_name, _, attribute = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise fail(parameter, f"an importable 'package.module:callable' ({type(error).__name__}: {error})",
                   path) from None
    return _as_circuit(path, found, parameter)


def registered_names() -> list[str]:
    """Every name a spec may use: built-ins, in-process registrations and installed entry points."""
    import astrostats.circuits  # noqa: F401  (the built-ins register when the package is imported)

    return sorted(set(_REGISTRY) | set(_entry_points()))


def get_circuit(name, parameter: str = "circuit") -> Circuit:
    """The circuit called ``name`` (registered, an entry point, or 'package.module:callable'); an unknown name
    is an InputError naming ``parameter`` (the setting it came from) and listing the registered names, with the
    nearest as a suggestion."""
    if isinstance(name, Circuit):
        return name
    if not isinstance(name, str) or not name:
        raise fail(parameter, "a circuit name or 'package.module:callable'", name)
    import astrostats.circuits  # noqa: F401

    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _import_path(name, parameter)
    points = _entry_points()
    if name in points:
        try:
            circuit = _as_circuit(name, points[name].load())
        except InputError:
            raise
        except Exception as error:  # a broken third-party package: say which
            raise InputError(f"circuit {name!r}: its entry point {points[name].value!r} failed to load "
                             f"({type(error).__name__}: {error})") from None
        return circuit if circuit.name == name else dataclasses.replace(circuit, name=name)
    known = registered_names()
    near = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise InputError(f"{parameter}: {name!r} is not a registered circuit{hint}; registered: {', '.join(known)}; "
                     "or give 'package.module:callable'")


def audited_first(audited: str, listed) -> tuple[str, ...]:
    """The circuits a study runs: the one under audit first (where the list does not place it), then every other
    listed one, each once."""
    listed = tuple(dict.fromkeys(listed))
    return listed if audited in listed else (audited, *listed)


__all__ = ["Circuit", "CircuitResult", "register_circuit", "get_circuit", "registered_names",
           "checked_result", "audited_first", "DEFAULT_CIRCUIT", "ENTRY_POINT_GROUP", "NATIVE_FEATURES"]
