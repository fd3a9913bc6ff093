"""Expand a sweep into tasks and run them, batched over feature seeds, returning one tidy table.

A task is (target head, circuit, feature map, m, feature seed). Seeds belong to tasks: the projection of
seed s at width m is drawn from SeedSequence([base_seed, feature map, m, s]), whatever the batching, so the
same spec gives the same table in any chunking or on any executor. Work is batched over seeds and sequences
in chunks sized to stay under ``memory_mb``.

Rows: the target's labels, ``circuit, feature_map, m, seed, sequence_id, metric, value`` with metrics
``relative_error`` (|Y_hat - Y|_F / |Y|_F per sequence), ``normaliser_error`` (|a - Z| / |Z| over tokens,
astrocyte response against the exact softmax normaliser) and ``cosine`` (mean over tokens).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from astrostats.circuits.astrocyte import run_circuit
from astrostats.circuits.attention import log_normaliser, softmax_attention
from astrostats.circuits.baselines import elu_linear_attention, no_astrocyte_attention, uniform_attention
from astrostats.circuits.features import FEATURE_MAPS, draw_projection, projection_rows
from astrostats.targets.base import TargetBatch
from astrostats.validation import check_choice, check_int, fail

LOG = logging.getLogger(__name__)

#: circuits drawn from random features (swept over m and seeds) and deterministic ones (computed once)
RANDOM_CIRCUITS = ("astrocyte", "no_astrocyte", "shuffled_kv", "mismatched_target")
FIXED_CIRCUITS = ("uniform", "elu_linear")
CIRCUITS = RANDOM_CIRCUITS + FIXED_CIRCUITS
METRICS = ("relative_error", "normaliser_error", "cosine")


@dataclass(frozen=True)
class Sweep:
    """What to compute on every target: m values, feature seeds, feature maps, and which circuits."""

    m: tuple[int, ...]
    n_seeds: int
    feature_maps: tuple[str, ...] = ("positive",)
    circuits: tuple[str, ...] = ("astrocyte",)
    base_seed: int = 0
    memory_mb: int = 512

    def __post_init__(self):
        if not self.m:
            raise fail("m", "a non-empty list of positive integers", self.m)
        for value in self.m:
            check_int("m", value, minimum=1)
        check_int("n_seeds", self.n_seeds, minimum=1)
        for feature in self.feature_maps:
            check_choice("feature_maps", feature, FEATURE_MAPS)
        for circuit in self.circuits:
            check_choice("circuits", circuit, CIRCUITS)
        check_int("memory_mb", self.memory_mb, minimum=1)


def projection_seed(base_seed: int, feature: str, m: int, seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([base_seed, FEATURE_MAPS.index(feature), m, seed])


def draw_projections(sweep: Sweep, feature: str, m: int, seeds: range, d: int) -> torch.Tensor:
    """(len(seeds), rows, d) projections, each drawn from its own task seed."""
    return torch.stack([draw_projection(m, d, feature=feature, seed=projection_seed(sweep.base_seed, feature, m, s))
                        for s in seeds])


def score(estimate: torch.Tensor, exact: torch.Tensor, log_response: torch.Tensor | None,
          log_z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sequence metrics, float64, reduced over tokens and value dimensions."""
    estimate = estimate.double()
    error = (estimate - exact).norm(dim=(-2, -1)) / exact.norm(dim=(-2, -1))
    cosine = torch.nn.functional.cosine_similarity(estimate, exact.expand_as(estimate), dim=-1).mean(-1)
    metrics = {"relative_error": error, "cosine": cosine}
    if log_response is not None:
        reference = log_z.amax(-1, keepdim=True)
        z = (log_z - reference).exp()
        a = (log_response - reference).exp()
        metrics["normaliser_error"] = (a - z).norm(dim=-1) / z.norm(dim=-1)
    return metrics


def _rows(labels: dict, circuit: str, feature: str, m, seeds, sequence_ids, metrics) -> pd.DataFrame:
    """Tidy rows from metric tensors shaped (seeds, sequences)."""
    frames = []
    for metric, values in metrics.items():
        values = values.reshape(len(seeds), len(sequence_ids)).numpy()
        frames.append(pd.DataFrame({
            "circuit": circuit, "feature_map": feature, "m": m,
            "seed": np.repeat(np.asarray(seeds, dtype=object), len(sequence_ids)),
            "sequence_id": np.tile(np.asarray(sequence_ids), len(seeds)),
            "metric": metric, "value": values.ravel(),
        }))
    frame = pd.concat(frames, ignore_index=True)
    for key, value in reversed(labels.items()):
        frame.insert(0, key, value)
    return frame


def _circuit_inputs(target: TargetBatch, circuit: str):
    """(q, k, v) the circuit sees; the target stays the true head's attention."""
    if circuit == "shuffled_kv":  # another sequence's keys and values
        return target.q, target.k.roll(1, 0), target.v.roll(1, 0)
    if circuit == "mismatched_target":
        if target.alternative_qk is None:
            raise fail("circuits", "a target with another head's q and k for 'mismatched_target'", target.labels)
        alt_q, alt_k = target.alternative_qk
        return alt_q, alt_k, target.v
    return target.q, target.k, target.v


def _chunk(total: int, per_item_bytes: float, budget_bytes: float) -> int:
    return int(max(1, min(total, budget_bytes // max(per_item_bytes, 1.0))))


def run_random_circuit(target: TargetBatch, sweep: Sweep, circuit: str, feature: str, m: int,
                       exact: torch.Tensor, log_z: torch.Tensor) -> pd.DataFrame:
    """All seeds of one (circuit, feature map, m) on one target, chunked over seeds and sequences."""
    q, k, v = _circuit_inputs(target, circuit)
    n_seq, n_tok, d = q.shape
    per_pair = 6.0 * n_tok * m * q.element_size()  # live (N, m) tensors per (seed, sequence)
    budget = sweep.memory_mb * 2**20
    seq_chunk = _chunk(n_seq, per_pair, budget)
    seed_chunk = _chunk(sweep.n_seeds, per_pair * seq_chunk, budget)
    frames = []
    for seed_start in range(0, sweep.n_seeds, seed_chunk):
        seeds = range(seed_start, min(sweep.n_seeds, seed_start + seed_chunk))
        projections = draw_projections(sweep, feature, m, seeds, d).to(q.dtype).unsqueeze(1)
        for seq_start in range(0, n_seq, seq_chunk):
            part = slice(seq_start, min(n_seq, seq_start + seq_chunk))
            args = (q[part], k[part], v[part], projections, feature, target.causal)
            if circuit == "no_astrocyte":
                output, log_response = no_astrocyte_attention(*args), None
            else:
                output, log_response = run_circuit(*args)
                if circuit != "astrocyte":
                    log_response = None
            metrics = score(output, exact[part], log_response, log_z[part])
            frames.append(_rows(target.labels, circuit, feature, m, list(seeds),
                                list(target.sequence_ids[part]), metrics))
    return pd.concat(frames, ignore_index=True)


def run_fixed_circuit(target: TargetBatch, circuit: str, exact, log_z) -> pd.DataFrame:
    q, k, v = target.q, target.k, target.v
    output = (uniform_attention if circuit == "uniform" else elu_linear_attention)(q, k, v, target.causal)
    metrics = {key: value.unsqueeze(0) for key, value in score(output, exact, None, log_z).items()}
    return _rows(target.labels, circuit, "none", pd.NA, [pd.NA], list(target.sequence_ids), metrics)


def run_sweep(targets: Iterable[TargetBatch], sweep: Sweep, *, progress: bool = True) -> pd.DataFrame:
    """Every circuit of the sweep on every target: one tidy row per (task, sequence, metric)."""
    targets = list(targets)
    random_tasks = [(c, f, m) for c in sweep.circuits if c in RANDOM_CIRCUITS
                    for f in (sweep.feature_maps if c == "astrocyte" else ("positive",)) for m in sweep.m]
    fixed = [c for c in sweep.circuits if c in FIXED_CIRCUITS]
    frames = []
    with tqdm(total=len(targets) * (len(random_tasks) + len(fixed)), disable=not progress,
              desc="circuits", unit="task") as bar:
        for target in targets:
            exact = softmax_attention(target.q, target.k, target.v, target.causal).double()
            log_z = log_normaliser(target.q.double(), target.k.double(), target.causal)
            for circuit in fixed:
                frames.append(run_fixed_circuit(target, circuit, exact, log_z))
                bar.update()
            for circuit, feature, m in random_tasks:
                if feature in ("trigonometric", "hyperbolic") and m % 2:
                    LOG.warning("skipping odd m=%d for paired feature map %s", m, feature)
                else:
                    frames.append(run_random_circuit(target, sweep, circuit, feature, m, exact, log_z))
                bar.update()
    table = pd.concat(frames, ignore_index=True)
    table["m"] = table["m"].astype("Int64")
    table["seed"] = table["seed"].astype("Int64")
    return table


def flops_per_sequence(n_tokens: int, d: int, d_v: int, m: int) -> float:
    """Multiply-adds x 2 of the circuit's heavy part: features of q and k, write and read phases."""
    return 2.0 * n_tokens * m * (2 * d + 2 * d_v)
