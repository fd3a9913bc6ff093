"""What is compared: exact softmax attention, the neuron–astrocyte circuit, its feature maps, null circuits and
what random-feature theory predicts. Pure tensor functions, no I/O.

>>> import torch
>>> from astrostats.circuits import astrocyte_attention, softmax_attention
>>> q, k, v = (0.3 * torch.randn(2, 50, 8, dtype=torch.float64) for _ in range(3))
>>> y = astrocyte_attention(q, k, v, m=4096, seed=0)
>>> bool((y - softmax_attention(q, k, v)).norm() / softmax_attention(q, k, v).norm() < 0.1)
True
"""
from astrostats.circuits.alternatives import dense_associative_memory, hebbian_only_attention, interneuron_attention
from astrostats.circuits.astrocyte import (CircuitOutput, astrocyte_attention, read_phase, reference_circuit,
                                           run_circuit, write_phase)
from astrostats.circuits.attention import log_normaliser, scale_queries_keys, softmax_attention
from astrostats.circuits.baselines import elu_linear_attention, no_astrocyte_attention, uniform_attention
from astrostats.circuits.features import (FEATURE_MAPS, PAIRED_MAPS, POSITIVE_MAPS, draw_projection, feature_parts,
                                          random_features)
from astrostats.circuits.registry import (DEFAULT_CIRCUIT, Circuit, CircuitResult, get_circuit, register_circuit,
                                          registered_names)
from astrostats.circuits.resources import resources
from astrostats.circuits import builtins  # noqa: F401  (registers the built-in circuits)
from astrostats.circuits.theory import predicted_error_constant

__all__ = ["astrocyte_attention", "run_circuit", "reference_circuit", "write_phase", "read_phase", "CircuitOutput",
           "softmax_attention", "log_normaliser", "scale_queries_keys",
           "uniform_attention", "no_astrocyte_attention", "elu_linear_attention",
           "FEATURE_MAPS", "PAIRED_MAPS", "POSITIVE_MAPS", "draw_projection", "random_features", "feature_parts",
           "predicted_error_constant", "dense_associative_memory", "interneuron_attention", "hebbian_only_attention",
           "resources", "Circuit", "CircuitResult", "register_circuit", "get_circuit", "registered_names",
           "DEFAULT_CIRCUIT"]
