"""How fast the circuit runs against what the hardware allows, FAVOR+ and exact attention.

Three measurements, each timed as the best of several repeats (the minimum is the least disturbed by
other processes on a shared machine), with a large float32 matmul measured in the same run beside it:

* throughput: the runner's unit of work (all seeds of one m on one head) and its heavy part
  (``run_circuit``), as achieved GFLOP/s from ``runner.flops_per_sequence``, and the ratio of the time
  to the matmul-implied floor (flops / matmul rate; 1.0 = as fast as a large matmul);
* FAVOR+: performer-pytorch's ``FastAttention`` with the same projection, same inputs, same m;
* crossover: the circuit's O(N m) cost against exact O(N^2) attention (torch's scaled_dot_product_attention),
  and the sequence length N from which the circuit is faster.
"""
from __future__ import annotations

import math
import time

import torch

from astrostats.circuits.astrocyte import run_circuit
from astrostats.circuits.attention import log_normaliser, softmax_attention
from astrostats.circuits.features import draw_projection
from astrostats.runner import Sweep, flops_per_sequence, run_random_circuit
from astrostats.targets.synthetic import synthetic_head

MATMUL_SIZE = 2048


def best_time(function, repeats: int = 5) -> float:
    function()  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2.0 * size**3 / best_time(lambda: a @ b, repeats) / 1e9


def throughput(m_values, n_tokens_values, *, d: int = 64, n_sequences: int = 8, n_seeds: int = 4,
               repeats: int = 3) -> list[dict]:
    rows = []
    for n_tokens in n_tokens_values:
        target = synthetic_head(n_sequences=n_sequences, n_tokens=n_tokens, d_head=d)
        exact = softmax_attention(target.q, target.k, target.v).double()
        log_z = log_normaliser(target.q.double(), target.k.double(), False)
        for m in m_values:
            sweep = Sweep(m=(m,), n_seeds=n_seeds)
            flops = flops_per_sequence(n_tokens, d, d, m) * n_sequences * n_seeds
            task = best_time(lambda: run_random_circuit(target, sweep, "astrocyte", "positive", m, exact, log_z),
                             repeats)
            projection = draw_projection(m, d, seed=0)
            heavy_flops = flops_per_sequence(n_tokens, d, d, m)
            one = (target.q[:1], target.k[:1], target.v[:1], projection)
            heavy = best_time(lambda: run_circuit(*one), 4 * repeats)  # milliseconds each: more repeats
            rate = matmul_gflops()
            for part, seconds, work in (("runner task", task, flops), ("run_circuit", heavy, heavy_flops)):
                rows.append({"benchmark": "throughput", "part": part, "n_tokens": n_tokens, "m": m,
                             "seconds": seconds, "gflops": work / seconds / 1e9, "matmul_gflops": rate,
                             "ratio_to_floor": seconds / (work / (rate * 1e9))})
    return rows


def versus_performer(m_values, *, n_tokens: int = 1024, d: int = 64, n_sequences: int = 8,
                     repeats: int = 5) -> list[dict]:
    from performer_pytorch import FastAttention

    target = synthetic_head(n_sequences=n_sequences, n_tokens=n_tokens, d_head=d)
    unscale = d ** 0.25  # FAVOR+ scales its inputs by d^(-1/4) itself
    q, k, v = (target.q * unscale).unsqueeze(1), (target.k * unscale).unsqueeze(1), target.v.unsqueeze(1)
    rows = []
    for m in m_values:
        projection = draw_projection(m, d, seed=0)
        module = FastAttention(dim_heads=d, nb_features=m)
        module.projection_matrix.copy_(projection)
        with torch.no_grad():
            ours = best_time(lambda: run_circuit(target.q, target.k, target.v, projection), repeats)
            theirs = best_time(lambda: module(q, k, v), repeats)
            difference = (run_circuit(target.q, target.k, target.v, projection).output - module(q, k, v).squeeze(1))
        rows.append({"benchmark": "performer", "n_tokens": n_tokens, "m": m, "circuit_seconds": ours,
                     "performer_seconds": theirs, "performer_over_circuit_time": theirs / ours,
                     "max_abs_difference_eps_1e-4": float(difference.abs().max())})
    return rows


def crossover(m_values, n_tokens_values, *, d: int = 64, repeats: int = 3) -> list[dict]:
    """Circuit against exact attention at growing N (one sequence, one head, float32)."""
    rows = []
    for n_tokens in n_tokens_values:
        target = synthetic_head(n_sequences=1, n_tokens=n_tokens, d_head=d)
        q, k, v = (x.unsqueeze(0) for x in (target.q, target.k, target.v))
        exact = best_time(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0), repeats)
        for m in m_values:
            projection = draw_projection(m, d, seed=0)
            circuit = best_time(lambda: run_circuit(target.q, target.k, target.v, projection), repeats)
            rows.append({"benchmark": "crossover", "n_tokens": n_tokens, "m": m, "circuit_seconds": circuit,
                         "exact_seconds": exact, "circuit_faster": circuit < exact})
    return rows


def crossover_lengths(rows: list[dict]) -> list[dict]:
    """Per m, the N from which the circuit stays faster than exact attention on the rest of the grid:
    log-log interpolation between the last slower and the first faster grid point."""
    summary = []
    for m in sorted({row["m"] for row in rows}):
        points = sorted((row["n_tokens"], math.log(row["circuit_seconds"] / row["exact_seconds"]))
                        for row in rows if row["m"] == m)
        tail = len(points)
        while tail > 0 and points[tail - 1][1] < 0:
            tail -= 1
        if tail == len(points):
            length, status = None, "not_reached_in_grid"
        elif tail == 0:
            length, status = float(points[0][0]), "faster_on_whole_grid"  # an upper bound
        else:
            (n0, r0), (n1, r1) = points[tail - 1], points[tail]
            fraction = r0 / (r0 - r1)
            length, status = math.exp(math.log(n0) + fraction * (math.log(n1) - math.log(n0))), "ok"
        summary.append({"benchmark": "crossover_length", "m": m, "crossover_n_tokens": length,
                        "status": status, "grid": [n for n, _ in points]})
    return summary


def run(quick: bool = False) -> dict[str, list[dict]]:
    m_values = (256, 1024, 4096) if quick else (256, 1024, 4096, 16384)
    lengths = (197,) if quick else (197, 1024)
    results = {"throughput": throughput(m_values, lengths)}
    results["performer"] = versus_performer((256, 1024) if quick else (256, 1024, 4096))
    grid = (256, 1024, 4096) if quick else (256, 512, 1024, 2048, 4096, 8192, 16384)
    points = crossover((256, 1024), grid)
    results["crossover"] = points + crossover_lengths(points)
    return results
