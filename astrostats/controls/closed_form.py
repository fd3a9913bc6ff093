"""The capacity null that is converged by definition: ridge regression on fixed random features.

Amendment v2 of the overfitting pre-registration (analyses/overfitting.toml) asks for a capacity null whose
training state cannot decide anything: the least-squares optimum itself, in closed form. Per token the inputs
are x_t = [q_t, mean key, mean value] (prefix means when causal, as the fitted MLP sees them); p fixed random
ReLU features phi(x) = relu(U x + b) / sqrt(p), with U, b drawn once from the null's own seed (independent of
the circuit's W); the output is y_t = phi(x_t) B + c. Only the read-out B (p x d_v) and c (d_v) are fitted
(no built-in uniform-attention term: the null is what fitted capacity buys, the trivial baselines are their own
family), p chosen so that p * d_v is the circuit's budget m * d. The loss is the endpoint squared, the sum
over sequences of |Y_hat - Y|_F^2 / |Y|_F^2, i.e. weighted least squares; the ridge penalty is chosen on the
validation split from a fixed grid (one SVD gives every grid point exactly). Nothing is iterated, so its
status is always "converged".
"""
from __future__ import annotations

import math

import torch
from torch import nn

from astrostats.controls.fitted import sequence_means
from astrostats.seeding import derived_seed, name_code, torch_generator
from astrostats.validation import check_int

#: ridge penalties relative to the mean squared singular value of the weighted design; 0 is the minimum-norm
#: least-squares solution (singular values below 1e-10 of the largest are dropped)
RIDGE_GRID = (0.0,) + tuple(10.0 ** p for p in range(-6, 3))


def feature_count(m: int, d: int, d_v: int) -> int:
    """Random features whose read-out (p * d_v weights) matches the circuit's budget m * d."""
    return max(1, round(check_int("m", m, minimum=1) * d / d_v))


class RandomFeatureRidge(nn.Module):
    """y_t = relu(U x_t + b) B / sqrt(p) + c with U, b fixed random and B, c set by :meth:`solve`."""

    def __init__(self, d: int, d_v: int, n_features: int, seed: int):
        super().__init__()
        n_inputs = 2 * d + d_v
        generator = torch_generator(check_int("seed", seed, minimum=0))
        self.register_buffer("projection", torch.randn(n_features, n_inputs, generator=generator,
                                                       dtype=torch.float64) / math.sqrt(n_inputs))
        self.register_buffer("offset", torch.rand(n_features, generator=generator, dtype=torch.float64) * 2 - 1)
        self.register_buffer("readout", torch.zeros(n_features, d_v, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(d_v, dtype=torch.float64))
        self.ridge = math.nan

    @property
    def n_fitted(self) -> int:
        return self.readout.numel() + self.bias.numel()

    def _parts(self, q, k, v, causal):
        q, k, v = q.double(), k.double(), v.double()
        mean_value = sequence_means(v, causal)
        inputs = torch.cat([q, sequence_means(k, causal), mean_value], -1)
        return torch.relu(inputs @ self.projection.T + self.offset) / math.sqrt(self.projection.shape[0])

    def forward(self, q, k, v, causal: bool = False) -> torch.Tensor:
        return self._read_out(self._parts(q, k, v, causal))

    def _read_out(self, features: torch.Tensor) -> torch.Tensor:
        return (features @ self.readout + self.bias).float()

    def solve(self, train, train_targets: torch.Tensor, validation, validation_targets: torch.Tensor
              ) -> "RandomFeatureRidge":
        """Weighted ridge read-out for every penalty of RIDGE_GRID; keeps the one with the least validation
        loss (mean squared relative error). Returns self."""
        design, residual, weights = self._system(train, train_targets)
        row_weights = weights.sqrt().unsqueeze(-1)
        mean_feature = (design * weights.unsqueeze(-1)).sum(0) / weights.sum()
        mean_residual = (residual * weights.unsqueeze(-1)).sum(0) / weights.sum()
        centred_design = (design - mean_feature) * row_weights
        centred_residual = (residual - mean_residual) * row_weights
        left, singular, right_t = torch.linalg.svd(centred_design, full_matrices=False)
        projected = left.T @ centred_residual
        scale = float((singular ** 2).mean()) or 1.0
        best = (math.inf, None, None, None)
        features = self._parts(validation.q, validation.k, validation.v, validation.causal)  # once for every penalty
        for ridge in RIDGE_GRID:
            if ridge == 0.0:
                kept = singular > singular.max() * 1e-10
                shrink = torch.where(kept, 1.0 / singular.clamp_min(1e-300), torch.zeros_like(singular))
            else:
                shrink = singular / (singular ** 2 + ridge * scale)
            readout = right_t.T @ (shrink.unsqueeze(-1) * projected)
            bias = mean_residual - mean_feature @ readout
            self.readout.copy_(readout)
            self.bias.copy_(bias)
            loss = self._loss_of(self._read_out(features), validation_targets)
            if loss < best[0]:
                best = (loss, ridge, readout, bias)
        _, self.ridge, readout, bias = best
        self.readout.copy_(readout)
        self.bias.copy_(bias)
        return self

    def _system(self, batch, targets):
        features = self._parts(batch.q, batch.k, batch.v, batch.causal)
        targets = targets.double()
        weights = 1.0 / targets.square().sum(dim=(-2, -1)).clamp_min(1e-300)  # 1 / |Y_i|_F^2 per sequence
        n_tokens = features.shape[-2]
        return (features.reshape(-1, features.shape[-1]), targets.reshape(-1, targets.shape[-1]),
                weights.repeat_interleave(n_tokens))

    def loss(self, batch, targets: torch.Tensor) -> float:
        with torch.no_grad():
            return self._loss_of(self(batch.q, batch.k, batch.v, batch.causal), targets)

    @staticmethod
    def _loss_of(estimate: torch.Tensor, targets: torch.Tensor) -> float:
        estimate, targets = estimate.double(), targets.double()
        errors = (estimate - targets).norm(dim=(-2, -1)) / targets.norm(dim=(-2, -1))
        return float(errors.square().mean())


def constant_output(train_targets: torch.Tensor) -> torch.Tensor:
    """The best constant predictor's output: the mean training output vector (d_v,). Shuffling whole
    sequences leaves it unchanged, so the shuffled and true training sets give the same constant."""
    return train_targets.double().mean(dim=(0, 1))


def seed_of(base_seed: int, m: int, seed: int) -> int:
    """The null's own feature seed, independent of the circuit's projection seeds."""
    return derived_seed(base_seed, name_code("capacity_null"), m, seed)


__all__ = ["RIDGE_GRID", "RandomFeatureRidge", "constant_output", "feature_count", "seed_of"]
