"""The built-in circuits, registered as a user's would be (:func:`astrostats.circuits.registry.register_circuit`).

Each registration joins a circuit's function, its counted resources and, for circuits with random hidden units,
its ``with_projection`` form (hidden units drawn by the caller: the runner's batched path, and the way several
circuits share one draw in the resource comparison).
"""
from __future__ import annotations

import torch

from astrostats.circuits.resources import (astrocyte_resources, elu_linear_resources, hebbian_only_resources, interneuron_sampled_resources, interneuron_tree_resources, memory_resources, no_astrocyte_resources, uniform_resources)
from astrostats.circuits.alternatives import dense_associative_memory, hebbian_only_attention, interneuron_attention
from astrostats.circuits.astrocyte import astrocyte_attention, hidden_units, run_circuit
from astrostats.circuits.baselines import elu_linear_attention, no_astrocyte_attention, uniform_attention
from astrostats.circuits.features import FEATURE_MAPS
from astrostats.circuits.registry import DEFAULT_CIRCUIT, CircuitResult, register_circuit


def _log(response: torch.Tensor) -> torch.Tensor:
    return response.double().log()


def _astrocyte_with_projection(q, k, v, projection, feature="positive", causal=False) -> CircuitResult:
    result = run_circuit(q, k, v, projection, feature, causal)
    return CircuitResult(result.output, result.log_response)


@register_circuit(DEFAULT_CIRCUIT, random_features=True, feature_maps=FEATURE_MAPS, units_add_up=True,
                  with_projection=_astrocyte_with_projection, resources=astrocyte_resources,
                  description="W random N(0,1), never trained; H and g written by the sequence (Hebbian, presynaptic)")
def astrocyte(q, k, v, *, m, seed, causal=False) -> CircuitResult:
    """The neuron–astrocyte circuit of Kozachkov et al. (2023)."""
    output, response = astrocyte_attention(q, k, v, m, seed=seed, causal=causal, return_response=True)
    return CircuitResult(output, _log(response))


def _no_astrocyte_with_projection(q, k, v, projection, feature="positive", causal=False) -> CircuitResult:
    return CircuitResult(no_astrocyte_attention(q, k, v, projection, feature, causal))


@register_circuit("no_astrocyte", random_features=True, feature_maps=FEATURE_MAPS,
                  with_projection=_no_astrocyte_with_projection, resources=no_astrocyte_resources,
                  description="as the circuit, one gain per sequence instead of the astrocyte's per-query division")
def no_astrocyte(q, k, v, *, m, seed, causal=False) -> CircuitResult:
    """Hebbian read-out divided by the mean response: tests whether the per-query division matters."""
    return _no_astrocyte_with_projection(q, k, v, hidden_units(q, m, None, "positive", seed), "positive", causal)


def _hebbian_only_with_projection(q, k, v, projection, feature="positive", causal=False) -> CircuitResult:
    return CircuitResult(hebbian_only_attention(q, k, v, projection=projection, feature=feature, causal=causal))


@register_circuit("hebbian_only", random_features=True, feature_maps=FEATURE_MAPS,
                  with_projection=_hebbian_only_with_projection, resources=hebbian_only_resources,
                  description="the Hebbian read-out with no normaliser, only the fixed gain 1/n_t")
def hebbian_only(q, k, v, *, m, seed, causal=False) -> CircuitResult:
    """Hebbian synapses read with a fixed gain per count and no normalising cell."""
    return CircuitResult(hebbian_only_attention(q, k, v, m, seed=seed, causal=causal))


def _interneurons(pool: str):
    def with_projection(q, k, v, projection, feature="positive", causal=False, *, fan_in) -> CircuitResult:
        output, response = interneuron_attention(q, k, v, projection=projection, feature=feature, fan_in=fan_in,
                                                 pool=pool, causal=causal, return_response=True)
        return CircuitResult(output, _log(response))

    def circuit(q, k, v, *, m, seed, causal=False, fan_in) -> CircuitResult:
        output, response = interneuron_attention(q, k, v, m, seed=seed, fan_in=fan_in, pool=pool, causal=causal,
                                                 return_response=True)
        return CircuitResult(output, _log(response))

    circuit.__doc__ = f"The astrocyte replaced by interneurons of at most fan_in inputs (pool {pool!r})."
    return circuit, with_projection


# the tree sums every unit exactly (the limit sets only its cell count); the sampled pool sees min(m, fan_in) units
for _pool, _counts, _changes in (("tree", interneuron_tree_resources, "count"),
                                 ("sampled", interneuron_sampled_resources, "output")):
    _function, _with_projection = _interneurons(_pool)
    register_circuit(f"interneuron_{_pool}", random_features=True, feature_maps=FEATURE_MAPS, fan_in_changes=_changes,
                     with_projection=_with_projection, resources=_counts)(_function)


def _memory(mode: str):
    def circuit(q, k, v, *, m, causal=False, fan_in=None) -> CircuitResult:  # fan_in limits only the count
        output, response = dense_associative_memory(q, k, v, m, mode=mode, causal=causal, return_response=True)
        return CircuitResult(output, _log(response))

    circuit.__doc__ = (f"Dense associative memory (Krotov & Hopfield 2021), one unit per stored memory "
                       f"({'merged into m groups' if mode == 'merge' else 'the m most recent kept'}).")
    return circuit


for _mode in ("merge", "drop"):
    register_circuit(f"dam_{_mode}", random_features=False, one_unit_per_token=True, fan_in_changes="count",
                     resources=memory_resources(_mode == "merge"))(_memory(_mode))


@register_circuit("uniform", random_features=False, resources=uniform_resources,
                  description="mean of the values; nothing random, nothing fitted")
def uniform(q, k, v, *, causal=False) -> CircuitResult:
    """Every query gets the (prefix) mean of the values."""
    return CircuitResult(uniform_attention(q, k, v, causal))


@register_circuit("elu_linear", random_features=False, resources=elu_linear_resources,
                  description="linear attention with elu+1 features of width d; nothing random, nothing fitted")
def elu_linear(q, k, v, *, causal=False) -> CircuitResult:
    """Linear attention with phi(x) = elu(x) + 1 (Katharopoulos et al. 2020)."""
    return CircuitResult(elu_linear_attention(q, k, v, causal))


__all__ = ["astrocyte", "no_astrocyte", "hebbian_only", "uniform", "elu_linear"]
