"""Fitted controls: models with the circuit's budget of m * d parameters, fitted to the target's outputs.

This is what overfitting would look like. Two forms, both mapping (q, k, v) of a sequence to outputs:

* :class:`LearnedFeatureAttention`: the circuit's own form, phi(x) = m^(-1/2) exp(W x - |x|^2 / 2), with W
  (m x d) trained by gradient descent to reproduce the target's attention ("softmax mimicry", as Hedgehog,
  Zhang et al. ICLR 2024, does with learned feature maps). It starts from the circuit's random W, so epoch 0
  is the circuit itself. The forward pass is :func:`astrostats.circuits.astrocyte.run_circuit`.
* :class:`FittedRegressor`: a generic residual MLP with no attention structure, on per-query inputs
  [q_t, mean key, mean value] (prefix means when causal), predicting y_t = mean value + MLP(inputs). It starts
  at the uniform baseline (zero read-out) and its width is chosen to match the budget.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from astrostats.circuits.astrocyte import run_circuit
from astrostats.controls.accounting import mlp_size_for_budget
from astrostats.validation import check_int, check_tensor


class LearnedFeatureAttention(nn.Module):
    """The circuit's form with a trainable projection W (m x d), initialised from ``projection``."""

    def __init__(self, projection: torch.Tensor):
        super().__init__()
        check_tensor("projection", projection, min_dim=2)
        self.projection = nn.Parameter(projection.detach().clone().float())

    @property
    def n_fitted(self) -> int:
        return self.projection.numel()

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
        return run_circuit(q, k, v, self.projection, "positive", causal).output


def sequence_means(x: torch.Tensor, causal: bool) -> torch.Tensor:
    """Mean over tokens, per query (prefix means when causal), shaped like x."""
    if causal:
        counts = torch.arange(1, x.shape[-2] + 1, dtype=x.dtype).unsqueeze(-1)
        return x.cumsum(-2) / counts
    return x.mean(-2, keepdim=True).expand_as(x)


class FittedRegressor(nn.Module):
    """y_t = mean value + MLP([q_t, mean key, mean value]); ``hidden`` chosen by :func:`for_budget`."""

    def __init__(self, d: int, d_v: int, hidden: int, seed: int):
        super().__init__()
        self.hidden_layer = nn.Linear(2 * d + d_v, check_int("hidden", hidden, minimum=1))
        self.readout = nn.Linear(hidden, d_v)
        generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        with torch.no_grad():  # torch's default init, drawn from our own generator (no global RNG state)
            bound = 1.0 / math.sqrt(2 * d + d_v)
            self.hidden_layer.weight.uniform_(-bound, bound, generator=generator)
            self.hidden_layer.bias.uniform_(-bound, bound, generator=generator)
            self.readout.weight.zero_()  # start exactly at the uniform baseline
            self.readout.bias.zero_()

    @classmethod
    def for_budget(cls, m: int, d: int, d_v: int, seed: int, tolerance: float = 0.25) -> "FittedRegressor":
        """The width whose fitted count is nearest m * d; InputError saying why if none is close enough."""
        size = mlp_size_for_budget(check_int("m", m, minimum=1) * d, d, d_v, tolerance)
        return cls(d, d_v, size.hidden, seed)

    @property
    def n_fitted(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
        mean_value = sequence_means(v, causal)
        inputs = torch.cat([q, sequence_means(k, causal), mean_value], -1)
        return mean_value + self.readout(torch.tanh(self.hidden_layer(inputs)))
