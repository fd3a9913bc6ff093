"""One biological resource accounting for every circuit that computes attention (claim C7).

Per circuit, width m (hidden units), head size d, value size d_v, sequence length N and the interneuron
input limit ``fan_in`` (where a circuit has an interneuron pool), counted the same way for all:

* cells of each type: hidden neurons, output neurons (d_v), interneurons, astrocytes; input neurons that
  carry q, k and v are common to every circuit and not counted;
* fixed random synapses (input -> hidden W), fixed unit-weight synapses (the upper levels of an
  interneuron tree, the identity inputs of elu+1 features), plastic synapses stored (Hebbian H, the
  couplings g, a memory's key and value) and plastic synapses written per token;
* hidden units allocated per token (``units_allocated_per_token``: a memory recruits, or re-targets, one unit
  per stored token; the random-feature circuits' units are fixed, 0). It is stated beside the ratios, not
  tested as one (a ratio to the astrocyte circuit's 0 is not defined);
* the largest number of inputs any single cell integrates, and that of the normalising cell (the
  astrocyte, the top of an interneuron tree) with the normaliser's depth in synaptic stages;
* the operations biology must supply: division (per query, per sequence, or a fixed gain), exponentiation
  (the hidden rates exp(w·x) or exp(q·k)), and anything else (allocating a new unit per memory).

The divisive action of the normaliser on the d_v output neurons is one connection per output neuron in
every circuit that has a normaliser, and is not counted.
"""
from __future__ import annotations

import math

from astrostats.circuits.registry import get_circuit
from astrostats.validation import check_int, fail

RESOURCES = ("hidden_neurons", "total_cells", "fixed_random_synapses", "plastic_synapses",
             "plastic_writes_per_token", "max_fan_in", "normaliser_fan_in")


def tree_levels(inputs: int, fan_in: int) -> list[int]:
    """Cells per level of a tree summing ``inputs`` terms with at most ``fan_in`` inputs per cell."""
    levels = []
    while inputs > 1 or not levels:
        inputs = math.ceil(inputs / fan_in)
        levels.append(inputs)
    return levels


# ------------------------------------------------------------------ each circuit's counts (registered with it)
def random_feature_synapses(m: int, d: int, d_v: int) -> dict:
    """W fixed random (m x d); H (d_v x m) and the couplings g (m) plastic, all written per token."""
    return dict(fixed_random_synapses=m * d, plastic_synapses=m * (d_v + 1), plastic_writes_per_token=m * (d_v + 1))


def astrocyte_resources(*, m, d, d_v, n_tokens, fan_in=None) -> dict:
    return {**random_feature_synapses(m, d, d_v), "astrocytes": 1, "normaliser_fan_in": m, "normaliser_depth": 1}


def no_astrocyte_resources(*, m, d, d_v, n_tokens, fan_in=None) -> dict:
    return {**astrocyte_resources(m=m, d=d, d_v=d_v, n_tokens=n_tokens), "division": "per sequence (mean response)"}


def interneuron_tree_resources(*, m, d, d_v, n_tokens, fan_in) -> dict:
    levels = tree_levels(m, fan_in)
    return {**random_feature_synapses(m, d, d_v), "interneurons": sum(levels), "fixed_unit_synapses": sum(levels[:-1]),
            "normaliser_fan_in": min(m, fan_in), "normaliser_depth": len(levels)}


def interneuron_sampled_resources(*, m, d, d_v, n_tokens, fan_in) -> dict:
    seen = min(m, fan_in)
    return {**random_feature_synapses(m, d, d_v), "interneurons": 1, "plastic_synapses": m * d_v + seen,
            "plastic_writes_per_token": m * d_v + seen, "normaliser_fan_in": seen, "normaliser_depth": 1}


def hebbian_only_resources(*, m, d, d_v, n_tokens, fan_in=None) -> dict:
    return {**random_feature_synapses(m, d, d_v), "plastic_synapses": m * d_v, "plastic_writes_per_token": m * d_v,
            "division": "none (fixed gain 1/n_t)"}


def memory_resources(merge: bool):
    """Dense associative memory: each unit stores one key (d), one value (d_v) and, merging, a gain."""
    def counts(*, m, d, d_v, n_tokens, fan_in) -> dict:
        if m > n_tokens:
            raise fail("m", f"an integer in [1, {n_tokens}] (at most one memory per token)", m)
        per_unit = d + d_v + merge
        levels = tree_levels(m, fan_in)
        return dict(plastic_synapses=m * per_unit, plastic_writes_per_token=per_unit, units_allocated_per_token=1,
                    interneurons=sum(levels),
                    fixed_unit_synapses=sum(levels[:-1]), normaliser_fan_in=min(m, fan_in),
                    normaliser_depth=len(levels), exponentiation="every hidden unit (exp(q·k))",
                    other_operations="a unit allocated per stored token" + (
                        " (running mean: 1/count)" if merge else " (the oldest overwritten)"))
    return counts


def uniform_resources(*, m, d, d_v, n_tokens, fan_in=None) -> dict:
    """A running sum of the values, divided by the count; each output neuron integrates its one value line."""
    return dict(hidden_neurons=0, plastic_synapses=d_v, plastic_writes_per_token=d_v,
                division="none (fixed gain 1/n_t)", exponentiation="none", max_fan_in=1)


def elu_linear_resources(*, m, d, d_v, n_tokens, fan_in=None) -> dict:
    """d hidden units elu(x_i) + 1 on identity inputs (one input each), H (d_v x d) and g (d)."""
    return dict(hidden_neurons=d, fixed_unit_synapses=d, plastic_synapses=d * (d_v + 1),
                plastic_writes_per_token=d * (d_v + 1), astrocytes=1, normaliser_fan_in=d, normaliser_depth=1,
                exponentiation="elu (exp below 0)", hidden_fan_in=1)


# -------------------------------------------------------------------------------------------- the row
def resources(circuit, *, m: int | None, d: int, d_v: int, n_tokens: int, fan_in: int | None = None) -> dict:
    """The resource row of one circuit (see the module docstring); m is None for fixed circuits. The circuit's
    own counts come from its registration; a circuit that declares none is an InputError saying so."""
    circuit = get_circuit(circuit)
    if circuit.resources is None:
        raise fail(f"circuit {circuit.name!r}", "a circuit that declares its resources (register_circuit(..., "
                                                "resources=...))", "no resources declared")
    d, d_v, n_tokens = (check_int(name, value, minimum=1) for name, value in
                        (("d", d), ("d_v", d_v), ("n_tokens", n_tokens)))
    m = check_int("m", m, minimum=1) if circuit.random_features or circuit.one_unit_per_token else None
    fan_in = check_int("fan_in", fan_in, minimum=2) if circuit.fan_in_changes else None
    row = {"circuit": circuit.name, "m": m, "fan_in_limit": fan_in,
           "hidden_neurons": m or 0, "output_neurons": d_v, "interneurons": 0, "astrocytes": 0,
           "fixed_random_synapses": 0, "fixed_unit_synapses": 0, "plastic_synapses": 0, "fitted_parameters": 0,
           "plastic_writes_per_token": 0, "units_allocated_per_token": 0, "max_fan_in": 0, "normaliser_fan_in": 0, "normaliser_depth": 0,
           "division": "per query", "exponentiation": "every hidden unit", "other_operations": ""}
    counts = dict(circuit.resources(m=m, d=d, d_v=d_v, n_tokens=n_tokens, fan_in=fan_in))
    hidden_fan_in = counts.pop("hidden_fan_in", d if row["hidden_neurons"] or counts.get("hidden_neurons") else 0)
    max_fan_in = counts.pop("max_fan_in", None)
    unknown = sorted(set(counts) - set(row))
    if unknown:
        raise fail(f"circuit {circuit.name!r}: resources", f"keys among {sorted(row)}", unknown)
    row.update(counts)
    # output neurons integrate the hidden units, the normaliser its inputs
    row["max_fan_in"] = max_fan_in or max(hidden_fan_in, row["hidden_neurons"], row["normaliser_fan_in"])
    row["total_cells"] = row["hidden_neurons"] + row["output_neurons"] + row["interneurons"] + row["astrocytes"]
    return row


__all__ = ["RESOURCES", "resources", "tree_levels", "astrocyte_resources", "no_astrocyte_resources",
           "interneuron_tree_resources", "interneuron_sampled_resources", "hebbian_only_resources",
           "memory_resources", "uniform_resources", "elu_linear_resources", "random_feature_synapses"]
