"""How fast the circuit runs against what the hardware allows, FAVOR+ and exact attention.

    python benchmarks/run.py --only circuit --quick   # also: python benchmarks/bench_circuit.py (ratio + breakdown)

First the headline: ``run_circuit`` (positive map) on each of its routes (``ROUTES``: the Hebbian route at
d = 64, the runner's chunk of 5 sequences of 197 tokens; the token-pair route of 32 MiniLM-like windows of 64
tokens, d = 32; the causal token-pair route of 8 SmolLM2-like windows of 197 tokens, d = 64) against a 2048^2 float32 matmul at 1 and 2 torch threads, the two timed alternately in the same run
(best of several), with the load average beside them: where the load exceeded the thread count the figure is the
machine's, not the code's, and the row says so. Then a per-part breakdown from torch.profiler (GEMM, exp2 pass,
shift/max, other) at one size, also written to results/circuit_breakdown.json. Then three measurements, each
timed as the best of several repeats (the minimum is the least disturbed by other processes on a shared
machine), with a large float32 matmul measured in the same run beside it:

* throughput: the runner's unit of work (all seeds of one m on one head) and its heavy part
  (``run_circuit``), as achieved GFLOP/s from ``runner.flops_per_sequence``, and the ratio of the time
  to the matmul-implied floor (flops / matmul rate; 1.0 = as fast as a large matmul);
* FAVOR+: performer-pytorch's ``FastAttention`` with the same projection, same inputs, same m;
* crossover: the circuit's O(N m) cost against exact O(N^2) attention (torch's scaled_dot_product_attention),
  and the sequence length N from which the circuit is faster;
* training: one training step of the learned-feature control (forward and backward for W, 8 sequences of 197
  tokens, one thread), by the hand-written backward (astrostats.circuits.trainable) and by autograd through the
  generic two-phase path, as GFLOP/s of its GEMMs and the speed-up.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from astrostats.circuits.astrocyte import generic_phases, run_circuit
from astrostats.circuits.attention import log_normaliser, softmax_attention
from astrostats.circuits.features import draw_projection
from astrostats.runner import Sweep, flops_per_sequence, run_random_circuit
from astrostats.targets.synthetic import synthetic_head
from run import MATMUL_SIZE, best_time, matmul_gflops  # the harness's timing and matmul reference (benchmarks/run.py)

RESULTS = Path(__file__).resolve().parent / "results"
LOADED = "machine loaded: figure not the code's"
#: profiler op names by part of the circuit (self CPU time; anything else is "other"). Where the fused pass serves
#: (astrostats.circuits.native: AVX-512 and a C compiler), each phase is one compiled call, its GEMMs and exp2
#: inseparable: "write_pass" (keys' rates GEMM, exp2, Hebbian GEMM) and "read_pass" (queries' rates GEMM, exp2,
#: read-out GEMM); elsewhere torch's GEMMs and the exp2 and shift passes are timed apart.
PARTS = {"write_pass": ("astrostats::fused_write",), "read_pass": ("astrostats::fused_read",),
         "gemm": ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"),
         "exp2": ("astrostats::exp2_online", "astrostats::exp2_shifted", "aten::exp2", "aten::exp2_", "aten::exp"),
         "shift_max": ("astrostats::rows_max", "aten::amax", "aten::max", "aten::maximum", "aten::sub_", "aten::sub")}


def circuit_inputs(m: int, n_sequences: int = 5, n_tokens: int = 197, d: int = 64):
    target = synthetic_head(n_sequences=n_sequences, n_tokens=n_tokens, d_head=d)
    return target.q, target.k, target.v, draw_projection(m, d, seed=0)


#: the circuit's routes at the shapes the analyses run: the Hebbian route (ViT-like: 5 sequences of 197 tokens,
#: d = 64; the runner's chunk), the token-pair route of short windows (MiniLM-like: 4 seeds x 8 windows of 64
#: tokens, d = 32) and the causal one (SmolLM2-like: 8 windows of 197 tokens, d = 64, the full profile's), each as
#: (sequences, tokens, head size, the m values timed, causal)
ROUTES = {"hebbian": (5, 197, 64, (4096, 16384), False), "token_pairs": (32, 64, 32, (16384,), False),
          "causal_token_pairs": (8, 197, 64, (16384,), True)}


def route_flops(route: str, n_sequences: int, n_tokens: int, d: int, m: int) -> float:
    """Multiply-adds x 2 of a route's GEMMs: the Hebbian route's (features of q and k, write and read phases,
    ``runner.flops_per_sequence``), or the token-pair route's (features of q and k, the pairs: 2 N (2 d + N)
    per unit; causal, the pairs on and below the diagonal only: 2 N (2 d + (N + 1) / 2))."""
    if route == "hebbian":
        return flops_per_sequence(n_tokens, d, d, m) * n_sequences
    pairs = (n_tokens + 1) / 2 if route == "causal_token_pairs" else n_tokens
    return 2.0 * n_sequences * n_tokens * m * (2 * d + pairs)


def matmul_ratio(threads=(1, 2), repeats: int = 5, rounds: int = 3) -> list[dict]:
    """run_circuit's GFLOP/s over a large matmul's at each thread count, for each route (``ROUTES``), the two
    timed alternately (``rounds`` times best of ``repeats``), with the load average during the measurement."""
    rows, before = [], torch.get_num_threads()
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    try:
        for route, (n_sequences, n_tokens, d, m_values, causal) in ROUTES.items():
            for m in m_values:
                inputs = circuit_inputs(m, n_sequences, n_tokens, d)
                flops = route_flops(route, n_sequences, n_tokens, d, m)
                for count in threads:
                    torch.set_num_threads(count)
                    circuit = matmul = math.inf
                    loads = [os.getloadavg()[0]]
                    for _ in range(rounds):
                        matmul = min(matmul, best_time(lambda: a @ b, repeats))
                        circuit = min(circuit, best_time(lambda: run_circuit(*inputs, causal=causal), repeats))
                        loads.append(os.getloadavg()[0])
                    matmul_rate, circuit_rate = 2.0 * MATMUL_SIZE**3 / matmul / 1e9, flops / circuit / 1e9
                    rows.append({"benchmark": "matmul_ratio", "route": route, "threads": count, "m": m,
                                 "n_tokens": n_tokens, "sequences": n_sequences, "d": d,
                                 "circuit_gflops": circuit_rate, "matmul_gflops": matmul_rate,
                                 "ratio": circuit_rate / matmul_rate, "load_average_max": max(loads),
                                 "note": LOADED if max(loads) > count else "quiet machine"})
    finally:
        torch.set_num_threads(before)
    return rows


def breakdown(m: int = 16384, repeats: int = 5) -> list[dict]:
    """Where run_circuit's time goes at one size (one thread): self CPU time per part from torch.profiler
    (the compiled passes are labelled astrostats::*), as a share of the total; parts that took no time are left
    out; written to results/circuit_breakdown.json."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inputs = circuit_inputs(m)
        run_circuit(*inputs)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(repeats):
                run_circuit(*inputs)
    finally:
        torch.set_num_threads(before)
    seconds = {part: 0.0 for part in (*PARTS, "other")}
    for event in profiler.key_averages():
        part = next((name for name, ops in PARTS.items() if event.key in ops), "other")
        seconds[part] += event.self_cpu_time_total / 1e6 / repeats
    total = sum(seconds.values())
    rows = [{"benchmark": "breakdown", "m": m, "n_tokens": 197, "sequences": 5, "d": 64, "threads": 1,
             "part": part, "seconds": value, "share": value / total, "load_average": os.getloadavg()[0]}
            for part, value in seconds.items() if value > 0]
    RESULTS.mkdir(exist_ok=True)
    temporary = RESULTS / "circuit_breakdown.json.tmp"
    temporary.write_text(json.dumps(rows, indent=1))
    os.replace(temporary, RESULTS / "circuit_breakdown.json")
    return rows


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


def training_step(m_values, *, n_sequences: int = 8, n_tokens: int = 197, d: int = 64, repeats: int = 5) -> list[dict]:
    """One fitting step of W (forward, backward) on one thread: the hand-written backward against autograd
    through the generic path, each as GFLOP/s of its GEMMs (forward: the two exponents' and the write and read
    GEMMs; backward: three (d_v + 1)-wide and two d-wide) over a same-run matmul's."""
    rows, before = [], torch.get_num_threads()
    torch.set_num_threads(1)

    def generic(q, k, v, weights):
        response, drive, _ = generic_phases(q, k, v, weights, "positive", False)
        return drive / response.unsqueeze(-1)

    def step(forward, q, k, v, weights):
        forward(q, k, v, weights).square().sum().backward()
        weights.grad = None

    try:
        for m in m_values:
            q, k, v, projection = circuit_inputs(m, n_sequences, n_tokens, d)
            weights = projection.clone().requires_grad_(True)
            width = v.shape[-1] + 1
            flops = 2.0 * n_sequences * n_tokens * m * (2 * d + 2 * width + 3 * width + 2 * d)
            matmul_rate = matmul_gflops(repeats=repeats)
            hand = best_time(lambda: step(lambda *x: run_circuit(*x).output, q, k, v, weights), repeats)
            autograd = best_time(lambda: step(generic, q, k, v, weights), repeats)
            rows.append({"benchmark": "training_step", "threads": 1, "m": m, "n_tokens": n_tokens,
                         "sequences": n_sequences, "hand_written_ms": 1e3 * hand, "autograd_ms": 1e3 * autograd,
                         "speed_up": autograd / hand, "hand_written_gflops": flops / hand / 1e9,
                         "matmul_gflops": matmul_rate, "ratio": flops / hand / 1e9 / matmul_rate})
    finally:
        torch.set_num_threads(before)
    return rows


def run(quick: bool = False) -> dict[str, list[dict]]:
    m_values = (256, 1024, 4096) if quick else (256, 1024, 4096, 16384)
    lengths = (197,) if quick else (197, 1024)
    results = {"matmul_ratio": matmul_ratio(), "breakdown": breakdown()}
    results["throughput"] = throughput(m_values, lengths)
    results["performer"] = versus_performer((256, 1024) if quick else (256, 1024, 4096))
    grid = (256, 1024, 4096) if quick else (256, 512, 1024, 2048, 4096, 8192, 16384)
    points = crossover((256, 1024), grid)
    results["crossover"] = points + crossover_lengths(points)
    results["training"] = training_step((256, 1024) if quick else (256, 1024, 4096))
    return results


if __name__ == "__main__":
    for row in matmul_ratio() + breakdown():
        print(json.dumps(row))
