"""Expand a sweep into tasks, run them through an executor, and return one tidy table.

A task is (target head, circuit, feature map, m) with all its feature seeds (:class:`SweepTask`). Seeds
belong to tasks: the projection of seed s at width m is drawn from SeedSequence([base_seed, feature map, m,
s]), so a task's result never depends on which executor (in process, local processes, a Dask cluster) ran
it, and tasks come back in a fixed order: the same spec gives the same table, bit for bit. Inside a task,
work is batched over seeds and sequences in chunks sized by the target's shape, m and ``memory_mb`` (never
by the executor); rows come out in one order whatever the chunks. A different ``memory_mb`` may change
values at float32 rounding (about 1e-5 relative), because batched matrix products round differently.

Rows: the target's labels, ``circuit, feature_map, m, seed, sequence_id, metric, value`` with metrics
``relative_error`` (|Y_hat - Y|_F / |Y|_F per sequence), ``normaliser_error_per_token`` (mean over tokens of
|a_t - Z_t| / Z_t, what the output depends on) and ``normaliser_error`` (|a - Z| / |Z| over tokens, the
circuit's normaliser, e.g. the astrocyte's response, against the exact softmax normaliser; for circuits that
return one) and ``cosine`` (mean over tokens). Circuits are named as the registry knows them
(:mod:`astrostats.circuits.registry`); the circuit under audit is ``Sweep.audited_circuit``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from astrostats.circuits.attention import log_normaliser, softmax_attention
from astrostats.circuits.features import FEATURE_MAPS, PAIRED_MAPS, draw_projection
from astrostats.circuits.kernels import is_tiled
from astrostats.circuits.registry import DEFAULT_CIRCUIT, Circuit, audited_first, checked_result, get_circuit
from astrostats.execution import Executor
from astrostats.targets.base import TargetBatch
from astrostats.validation import check_choice, check_int, check_int_list, fail
from astrostats.seeding import derived_seed, feature_code, name_code, seed_sequence

LOG = logging.getLogger(__name__)

METRICS = ("relative_error", "normaliser_error", "normaliser_error_per_token", "cosine")
CHUNK_TOKENS = 1024  # tokens (sequences x N) per call of the tiled circuit
CHUNK_BYTES = 2 * 2**20  # target size of one feature tensor (seeds x sequences x N x m) per chunk


@dataclass(frozen=True)
class Sweep:
    """What to compute on every target: m values, feature seeds, feature maps, and which circuits."""

    m: tuple[int, ...]
    n_seeds: int
    feature_maps: tuple[str, ...] = ("positive",)
    circuits: tuple[str, ...] = ()
    base_seed: int = 0
    memory_mb: int = 512
    audited_circuit: str = DEFAULT_CIRCUIT

    def __post_init__(self):
        check_int_list("m", self.m)
        check_int("n_seeds", self.n_seeds, minimum=1)
        for feature in self.feature_maps:
            check_choice("feature_maps", feature, FEATURE_MAPS)
        for name, parameter in ((self.audited_circuit, "audited_circuit"),
                                *((c, "circuits") for c in self.circuits if c not in INPUT_NULLS)):
            circuit = get_circuit(name, parameter)
            if circuit.fan_in_changes or circuit.one_unit_per_token:  # their widths are not the runner's m
                raise fail(parameter, "circuits the runner sweeps (random features over m, or fixed ones); "
                                      "circuits with an input limit or one unit per stored token run in the "
                                      "circuits analysis", name)
        check_int("memory_mb", self.memory_mb, minimum=1)

    @property
    def run_circuits(self) -> tuple[str, ...]:
        """The circuit under audit (first, unless the list places it), then every other listed circuit or null."""
        return audited_first(self.audited_circuit, self.circuits)


def projection_seed(base_seed: int, feature: str, m: int, seed: int) -> np.random.SeedSequence:
    return seed_sequence(base_seed, feature_code(feature), m, seed)


#: projections drawn in this process, kept for the next circuit of the same sweep (the astrocyte circuit and its
#: nulls share each seed's W: 2.8 s of the scaling analysis's 41 went to drawing them again); newest last
_DRAWN: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
DRAWN_BYTES = 2**28  # at most 256 MB of them


def draw_projections(sweep: Sweep, feature: str, m: int, seeds: range, d: int) -> torch.Tensor:
    """(len(seeds), rows, d) projections, each drawn from its own task seed (a fresh tensor: the callers may
    change it; the draws themselves are kept, :data:`DRAWN_BYTES` at most)."""
    return torch.stack([_projection(sweep.base_seed, feature, m, s, d) for s in seeds])


def _projection(base_seed: int, feature: str, m: int, seed: int, d: int) -> torch.Tensor:
    key = (base_seed, feature, m, seed, d)
    if key in _DRAWN:
        _DRAWN.move_to_end(key)
        return _DRAWN[key]
    projection = draw_projection(m, d, feature=feature, seed=projection_seed(base_seed, feature, m, seed))
    if projection.numel() * projection.element_size() <= DRAWN_BYTES // 8:
        _DRAWN[key] = projection
        while sum(x.numel() * x.element_size() for x in _DRAWN.values()) > DRAWN_BYTES:
            _DRAWN.popitem(last=False)
    return projection


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
        # the output reads a_t only through a_t / Z_t: the per-token relative error weighs every token alike (the
        # L2 form above weighs a token by Z_t^2, so one token can carry most of it)
        metrics["normaliser_error_per_token"] = (log_response - log_z).expm1().abs().mean(-1)
    return metrics


ROW_COLUMNS = ("circuit", "feature_map", "m", "seed", "sequence_id", "metric", "value")


def tidy_rows(labels: dict, circuit: str, feature: str, m, seeds, sequence_ids, metrics) -> pd.DataFrame:
    """Tidy rows from metric tensors shaped (seeds, sequences)."""
    clash = set(labels) & set(ROW_COLUMNS)
    if clash:
        raise fail("labels", f"label names other than the rows' own columns {list(ROW_COLUMNS)}", sorted(clash))
    cells = len(seeds) * len(sequence_ids)  # one frame for every metric and label: pandas' cost is per frame and
    return pd.DataFrame({  # column, not per row (the labels lead, as labelled() puts them)
        **labels, "circuit": circuit, "feature_map": feature, "m": m,
        "seed": np.tile(np.repeat(np.asarray(seeds, dtype=object), len(sequence_ids)), len(metrics)),
        "sequence_id": np.tile(np.asarray(sequence_ids), len(seeds) * len(metrics)),
        "metric": np.repeat(np.asarray(list(metrics), dtype=object), cells),
        "value": np.concatenate([values.reshape(cells).numpy() for values in metrics.values()]),
    })


def _shuffled_kv(target: TargetBatch):
    """Another sequence's keys and values (specificity null)."""
    return target.q, target.k.roll(1, 0), target.v.roll(1, 0)


def _mismatched_target(target: TargetBatch):
    """Another head's q and k (specificity null)."""
    if target.alternative_qk is None:
        raise fail("circuits", "a target with another head's q and k for 'mismatched_target'", target.labels)
    alt_q, alt_k = target.alternative_qk
    return alt_q, alt_k, target.v


#: nulls that run the circuit under audit on other inputs, scored against the true head's attention
INPUT_NULLS = {"shuffled_kv": _shuffled_kv, "mismatched_target": _mismatched_target}


def resolve(sweep: Sweep, name: str) -> tuple[Circuit, tuple]:
    """(the circuit that runs, the (q, k, v) it sees) for a listed name: an input null runs the audited circuit."""
    return (get_circuit(sweep.audited_circuit), INPUT_NULLS[name]) if name in INPUT_NULLS else (get_circuit(name), None)


def _circuit_inputs(target: TargetBatch, inputs) -> tuple:
    return (target.q, target.k, target.v) if inputs is None else inputs(target)


def feature_maps_of(sweep: Sweep, name: str) -> tuple[str, ...]:
    """The audited circuit runs every swept feature map it supports; nulls and other circuits their own first."""
    circuit, _ = resolve(sweep, name)
    if name == sweep.audited_circuit:
        return tuple(f for f in sweep.feature_maps if f in circuit.feature_maps) or (circuit.primary_feature_map,)
    return (circuit.primary_feature_map,)


def circuit_seed(sweep: Sweep, feature: str, m: int, seed: int) -> int:
    """The integer seed handed to a circuit that draws its own hidden units (one per task seed)."""
    code = feature_code(feature) if feature in FEATURE_MAPS else name_code(feature)
    return derived_seed(sweep.base_seed, code, m, seed)


def items_per_chunk(total: int, per_item_bytes: float, budget_bytes: float) -> int:
    """How many of ``total`` items fit in ``budget_bytes`` (at least 1)."""
    return int(max(1, min(total, budget_bytes // max(per_item_bytes, 1.0))))


def run_random_circuit(target: TargetBatch, sweep: Sweep, name: str, feature: str, m: int,
                       exact: torch.Tensor, log_z: torch.Tensor) -> pd.DataFrame:
    """All seeds of one (circuit, feature map, m) on one target, chunked over seeds and sequences.

    The tiled circuit (positive maps, non-causal) keeps its rates in cache by itself: it gets one seed's W
    at a time (a 2-D W lets torch fold sequences and tokens into one GEMM) and as many sequences as memory
    allows. Other paths materialise (seeds x sequences x N x m) tensors: a chunk holds at most
    ``CHUNK_BYTES`` of one, within the sweep's ``memory_mb``; small chunks stay in cache and in malloc's heap
    (on one core, 2-12 MB chunks ran 2-3x faster than the 25-100 MB batches of a 512 MB budget). A circuit
    without a ``with_projection`` form draws its own hidden units from an integer seed per task seed, and is
    called one seed at a time on every sequence.
    """
    circuit, inputs = resolve(sweep, name)
    q, k, v = _circuit_inputs(target, inputs)
    if circuit.with_projection is None:
        return _run_own_draws(target, sweep, name, circuit, (q, k, v), feature, m, exact, log_z)
    n_seq, n_tok, d = q.shape
    memory = sweep.memory_mb * 2**20
    scores_normaliser = inputs is None
    if is_tiled(feature, target.causal):
        per_pair = 2.0 * v.shape[-1] * m * q.element_size()  # Hebbian blocks (rates: one tile buffer)
        seq_chunk = min(items_per_chunk(n_seq, per_pair, memory), max(1, CHUNK_TOKENS // n_tok))
        seed_chunk = 1
    else:
        per_pair = 6.0 * n_tok * m * q.element_size()  # live (N, m) tensors per (seed, sequence)
        budget = min(memory, 6.0 * CHUNK_BYTES)  # CHUNK_BYTES per (N, m) tensor
        seq_chunk = items_per_chunk(n_seq, per_pair, budget)
        seed_chunk = items_per_chunk(sweep.n_seeds, per_pair * seq_chunk, budget)
    values: dict[str, torch.Tensor] = {}  # metric -> (n_seeds, n_seq): rows keep one order whatever the chunks
    for seed_start in range(0, sweep.n_seeds, seed_chunk):
        seeds = slice(seed_start, min(sweep.n_seeds, seed_start + seed_chunk))
        projections = draw_projections(sweep, feature, m, range(seeds.start, seeds.stop), d).to(q.dtype)
        projections = projections[0] if seed_chunk == 1 else projections.unsqueeze(1)
        for seq_start in range(0, n_seq, seq_chunk):
            part = slice(seq_start, min(n_seq, seq_start + seq_chunk))
            result = checked_result(circuit.name, circuit.with_projection(
                q[part], k[part], v[part], projections, feature, target.causal), q[part], v[part])
            log_response = result.log_normaliser if scores_normaliser else None
            for metric, value in score(result.output, exact[part], log_response, log_z[part]).items():
                table = values.setdefault(metric, torch.empty(sweep.n_seeds, n_seq, dtype=torch.float64))
                table[seeds, part] = value.reshape(seeds.stop - seeds.start, part.stop - part.start)
    return tidy_rows(target.labels, name, feature, m, list(range(sweep.n_seeds)), list(target.sequence_ids), values)


def _run_own_draws(target: TargetBatch, sweep: Sweep, name: str, circuit: Circuit, qkv: tuple, feature: str, m: int,
                   exact: torch.Tensor, log_z: torch.Tensor) -> pd.DataFrame:
    """A circuit that draws its own hidden units: one call per task seed, on every sequence."""
    per_seed = []
    for seed in range(sweep.n_seeds):
        result = circuit(*qkv, m=m, seed=circuit_seed(sweep, feature, m, seed), causal=target.causal)
        log_response = result.log_normaliser if name not in INPUT_NULLS else None
        per_seed.append(score(result.output, exact, log_response, log_z))
    values = {metric: torch.stack([scores[metric] for scores in per_seed]) for metric in per_seed[0]}
    return tidy_rows(target.labels, name, feature, m, list(range(sweep.n_seeds)), list(target.sequence_ids), values)


def run_fixed_circuit(target: TargetBatch, sweep: Sweep, name: str, exact, log_z) -> pd.DataFrame:
    """A circuit without random hidden units, computed once; an input null of a fixed audited circuit too."""
    circuit, inputs = resolve(sweep, name)
    result = circuit(*_circuit_inputs(target, inputs), causal=target.causal)
    log_response = result.log_normaliser if inputs is None else None
    metrics = {key: value.unsqueeze(0) for key, value in score(result.output, exact, log_response, log_z).items()}
    return tidy_rows(target.labels, name, "none", pd.NA, [pd.NA], list(target.sequence_ids), metrics)


def target_digest(target: TargetBatch) -> str:
    """SHA-256 of everything a task reads from a target: labels, causality, sequence ids and tensors."""
    digest = hashlib.sha256(json.dumps([target.labels, target.causal, list(target.sequence_ids)],
                                       sort_keys=True, default=str).encode())
    tensors = [target.q, target.k, target.v, *(target.alternative_qk or ())]
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class SweepTask:
    """The runner's unit of work: one (target, circuit, feature map, m) with all seeds."""

    target_index: int
    circuit: str
    feature: str
    m: int | None  # None for the fixed circuits


def references(target: TargetBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact attention (float64) and log softmax normaliser: what every circuit is scored against."""
    exact = softmax_attention(target.q, target.k, target.v, target.causal).double()
    log_z = log_normaliser(target.q.double(), target.k.double(), target.causal)
    return exact, log_z


def run_task(common: tuple, task: SweepTask) -> pd.DataFrame:
    """Run one task; ``common`` = (sweep, targets, references), shipped to each worker once."""
    sweep, targets, exact_references = common
    target = targets[task.target_index]
    exact, log_z = exact_references[task.target_index]
    if task.m is None:
        return run_fixed_circuit(target, sweep, task.circuit, exact, log_z)
    return run_random_circuit(target, sweep, task.circuit, task.feature, task.m, exact, log_z)


def sweep_tasks(targets: list[TargetBatch], sweep: Sweep) -> list[SweepTask]:
    """Tasks in the table's row order: per target, fixed circuits, then (circuit, feature map, m)."""
    random = {c: resolve(sweep, c)[0].random_features for c in sweep.run_circuits}
    random_tasks = [(c, f, m) for c in sweep.run_circuits if random[c] for f in feature_maps_of(sweep, c)
                    for m in sweep.m]
    tasks = []
    for index in range(len(targets)):
        tasks.extend(SweepTask(index, c, "none", None) for c in sweep.run_circuits if not random[c])
        for circuit, feature, m in random_tasks:
            if feature in PAIRED_MAPS and m % 2:
                LOG.warning("skipping odd m=%d for paired feature map %s", m, feature)
            else:
                tasks.append(SweepTask(index, circuit, feature, m))
    return tasks


def run_sweep(targets: Iterable[TargetBatch], sweep: Sweep, *, progress: bool = True,
              executor: Executor | None = None) -> pd.DataFrame:
    """Every circuit of the sweep on every target: one tidy row per (task, sequence, metric).

    Tasks go through ``executor`` (default: in process, no cache). The table is the same, row for row and
    bit for bit, whichever executor ran it. Cache keys hash the target's content, the sweep and the task.
    """
    targets = list(targets)
    if not targets:
        raise fail("targets", "at least one target", targets)
    tasks = sweep_tasks(targets, sweep)
    digests = [target_digest(target) for target in targets]
    sweep_id = json.dumps(dataclasses.asdict(sweep), sort_keys=True)
    keys = [json.dumps([digests[t.target_index], sweep_id, t.circuit, t.feature, t.m]) for t in tasks]
    costs = [_task_cost(targets[t.target_index], sweep, t) for t in tasks]
    common = (sweep, targets, [references(target) for target in targets])
    executor = executor or Executor()
    frames = executor.map(run_task, tasks, keys=keys, namespace="runner.run_sweep", desc="circuits",
                          common=common, costs=costs, progress=progress)
    table = pd.concat(frames, ignore_index=True)
    table["m"] = table["m"].astype("Int64")
    table["seed"] = table["seed"].astype("Int64")
    return table


def _task_cost(target: TargetBatch, sweep: Sweep, task: SweepTask) -> float:
    """Relative work of a task (its heavy part), used to start the largest tasks first."""
    n_seq, n_tok, d = target.q.shape
    if task.m is None:
        return float(n_seq * n_tok * n_tok * d)
    return sweep.n_seeds * n_seq * flops_per_sequence(n_tok, d, target.v.shape[-1], task.m)


def flops_per_sequence(n_tokens: int, d: int, d_v: int, m: int) -> float:
    """Multiply-adds x 2 of the circuit's heavy part: features of q and k, write and read phases."""
    return 2.0 * n_tokens * m * (2 * d + 2 * d_v)
