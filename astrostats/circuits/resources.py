"""One biological resource accounting for every circuit that computes attention (claim C7).

Per circuit, width m (hidden units), head size d, value size d_v, sequence length N and the interneuron
input limit ``fan_in`` (where a circuit has an interneuron pool), counted the same way for all:

* cells of each type: hidden neurons, output neurons (d_v), interneurons, astrocytes; input neurons that
  carry q, k and v are common to every circuit and not counted;
* fixed random synapses (input -> hidden W), fixed unit-weight synapses (the upper levels of an
  interneuron tree, the identity inputs of elu+1 features), plastic synapses stored (Hebbian H, the
  couplings g, a memory's key and value) and plastic synapses written per token;
* the largest number of inputs any single cell integrates, and that of the normalising cell (the
  astrocyte, the top of an interneuron tree) with the normaliser's depth in synaptic stages;
* the operations biology must supply: division (per query, per sequence, or a fixed gain), exponentiation
  (the hidden rates exp(w·x) or exp(q·k)), and anything else (allocating a new unit per memory).

The divisive action of the normaliser on the d_v output neurons is one connection per output neuron in
every circuit that has a normaliser, and is not counted.
"""
from __future__ import annotations

import math

from astrostats.validation import check_choice, check_int, fail

RANDOM_FEATURE_CIRCUITS = ("astrocyte", "interneuron_tree", "interneuron_sampled", "hebbian_only", "no_astrocyte")
MEMORY_CIRCUITS = ("dam_merge", "dam_drop")
FIXED_CIRCUITS = ("uniform", "elu_linear")
POOL_CIRCUITS = ("interneuron_tree", "interneuron_sampled", "dam_merge", "dam_drop")  # need a fan_in
CIRCUITS = RANDOM_FEATURE_CIRCUITS + MEMORY_CIRCUITS + FIXED_CIRCUITS
RESOURCES = ("hidden_neurons", "total_cells", "fixed_random_synapses", "plastic_synapses",
             "plastic_writes_per_token", "max_fan_in", "normaliser_fan_in")


def tree_levels(inputs: int, fan_in: int) -> list[int]:
    """Cells per level of a tree summing ``inputs`` terms with at most ``fan_in`` inputs per cell."""
    levels = []
    while inputs > 1 or not levels:
        inputs = math.ceil(inputs / fan_in)
        levels.append(inputs)
    return levels


def resources(circuit: str, *, m: int | None, d: int, d_v: int, n_tokens: int, fan_in: int | None = None) -> dict:
    """The resource row of one circuit (see the module docstring); m is None for the fixed circuits."""
    check_choice("circuit", circuit, CIRCUITS)
    d, d_v, n_tokens = (check_int(name, value, minimum=1) for name, value in
                        (("d", d), ("d_v", d_v), ("n_tokens", n_tokens)))
    if circuit in FIXED_CIRCUITS:
        m = d if circuit == "elu_linear" else 0
    else:
        m = check_int("m", m, minimum=1)
    if circuit in MEMORY_CIRCUITS and m > n_tokens:
        raise fail("m", f"an integer in [1, {n_tokens}] (at most one memory per token)", m)
    if circuit in POOL_CIRCUITS:
        fan_in = check_int("fan_in", fan_in, minimum=2)
    row = {"circuit": circuit, "m": None if circuit in FIXED_CIRCUITS else m, "fan_in_limit": fan_in if circuit in POOL_CIRCUITS else None,
           "hidden_neurons": m, "output_neurons": d_v, "interneurons": 0, "astrocytes": 0,
           "fixed_random_synapses": 0, "fixed_unit_synapses": 0, "plastic_synapses": 0,
           "plastic_writes_per_token": 0, "max_fan_in": 0, "normaliser_fan_in": 0, "normaliser_depth": 0,
           "division": "per query", "exponentiation": "every hidden unit", "other_operations": ""}
    if circuit in RANDOM_FEATURE_CIRCUITS:  # W fixed random; H (d_v x m) and, with a normaliser, g (m) plastic
        row.update(fixed_random_synapses=m * d, plastic_synapses=m * (d_v + 1), plastic_writes_per_token=m * (d_v + 1))
    if circuit == "astrocyte":
        row.update(astrocytes=1, normaliser_fan_in=m, normaliser_depth=1)
    elif circuit == "interneuron_tree":
        levels = tree_levels(m, fan_in)
        row.update(interneurons=sum(levels), fixed_unit_synapses=sum(levels[:-1]), normaliser_fan_in=min(m, fan_in),
                   normaliser_depth=len(levels))
    elif circuit == "interneuron_sampled":
        seen = min(m, fan_in)
        row.update(interneurons=1, plastic_synapses=m * d_v + seen, plastic_writes_per_token=m * d_v + seen,
                   normaliser_fan_in=seen, normaliser_depth=1)
    elif circuit == "hebbian_only":
        row.update(plastic_synapses=m * d_v, plastic_writes_per_token=m * d_v, division="none (fixed gain 1/n_t)")
    elif circuit == "no_astrocyte":
        row.update(astrocytes=1, normaliser_fan_in=m, normaliser_depth=1, division="per sequence (mean response)")
    elif circuit in MEMORY_CIRCUITS:  # each unit stores one key (d), one value (d_v) and, merging, a gain
        per_unit = d + d_v + (circuit == "dam_merge")
        levels = tree_levels(m, fan_in)
        row.update(plastic_synapses=m * per_unit, plastic_writes_per_token=per_unit, interneurons=sum(levels),
                   fixed_unit_synapses=sum(levels[:-1]), normaliser_fan_in=min(m, fan_in),
                   normaliser_depth=len(levels), exponentiation="every hidden unit (exp(q·k))",
                   other_operations="a unit allocated per stored token" + (
                       " (running mean: 1/count)" if circuit == "dam_merge" else " (the oldest overwritten)"))
    elif circuit == "uniform":  # running sum of the values, divided by the count
        row.update(plastic_synapses=d_v, plastic_writes_per_token=d_v, division="none (fixed gain 1/n_t)",
                   exponentiation="none")
    elif circuit == "elu_linear":  # d hidden units elu(x_i) + 1 on identity inputs, H (d_v x d) and g (d)
        row.update(fixed_unit_synapses=d, plastic_synapses=d * (d_v + 1), plastic_writes_per_token=d * (d_v + 1),
                   astrocytes=1, normaliser_fan_in=d, normaliser_depth=1, exponentiation="elu (exp below 0)")
    hidden_fan_in = 1 if circuit == "elu_linear" else d if m else 0
    row["max_fan_in"] = max(hidden_fan_in, m, row["normaliser_fan_in"])  # output neurons integrate the m units
    if circuit == "uniform":
        row["max_fan_in"] = 1  # each output neuron integrates its one value line over time
    row["total_cells"] = row["hidden_neurons"] + row["output_neurons"] + row["interneurons"] + row["astrocytes"]
    return row


__all__ = ["CIRCUITS", "RANDOM_FEATURE_CIRCUITS", "MEMORY_CIRCUITS", "FIXED_CIRCUITS", "POOL_CIRCUITS",
           "RESOURCES", "resources", "tree_levels"]
