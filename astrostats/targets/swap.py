"""The neuron–astrocyte circuit swapped into a whole network: every head of every attention layer replaced by the
circuit, for the end-to-end comparisons (language models through transformers' attention interface, the ViT
through its attention callable)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from astrostats.circuits.features import draw_projection
from astrostats.circuits.registry import DEFAULT_CIRCUIT, checked_result, get_circuit
from astrostats.seeding import derived_seed, seed_sequence
from astrostats.validation import check_int

BYTES_PER_LIVE_FEATURE = 6 * 4  # about six live float32 (N, m) tensors per head and sequence in the circuit


@dataclass(frozen=True)
class CircuitSetting:
    """The circuit that replaces attention end to end (by its registered name): m hidden units per head, one
    feature seed."""

    m: int
    seed: int
    causal: bool = False
    feature: str = "positive"
    base_seed: int = 0
    memory_mb: int = 1024
    circuit: str = DEFAULT_CIRCUIT

    def __post_init__(self):
        get_circuit(self.circuit)
        check_int("m", self.m, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("memory_mb", self.memory_mb, minimum=1)


def circuit_heads(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, setting: CircuitSetting) -> torch.Tensor:
    """The setting's circuit for every head of one layer: q, k scaled, (B, H, N, d) -> (B, H, N, d_v).

    Each (layer, head) gets its own projection, drawn from SeedSequence([base_seed, seed, layer, head, m]) (a
    circuit that draws its own units gets an integer seed from the same keys). Work runs one head at a time
    and in chunks of sequences sized to ``memory_mb``.
    """
    circuit = get_circuit(setting.circuit)
    batch, n_heads, n_tokens, d = q.shape
    per_sequence = BYTES_PER_LIVE_FEATURE * n_tokens * setting.m
    chunk = int(max(1, min(batch, setting.memory_mb * 2**20 // per_sequence)))
    outputs = []
    for head in range(n_heads):
        keys = (setting.base_seed, setting.seed, layer, head, setting.m)
        projection = (None if circuit.with_projection is None else
                      draw_projection(setting.m, d, feature=setting.feature, seed=seed_sequence(*keys), dtype=q.dtype))

        def run(q, k, v):
            if projection is None:
                return circuit(q, k, v, m=setting.m, seed=derived_seed(*keys), causal=setting.causal)
            return checked_result(circuit.name, circuit.with_projection(q, k, v, projection, setting.feature,
                                                                        setting.causal), q, v)
        parts = [run(q[start:start + chunk, head], k[start:start + chunk, head], v[start:start + chunk, head]).output
                 for start in range(0, batch, chunk)]
        outputs.append(torch.cat(parts))
    return torch.stack(outputs, 1)
