"""Speed and memory of the direct measurement at an astrocyte's synapse count (issue 14).

    python benchmarks/bench_measured.py                      # m to 1e5 on one MiniLM-sized and one SmolLM2-sized head
    python benchmarks/bench_measured.py --m 1000 100000 2000000

Each case runs in a fresh process (so the peak resident memory is its own) on a synthetic head of the real
models' shapes: MiniLM (non-causal, d = 32, 197 tokens), SmolLM2 (causal, d = 64, 197 tokens), the ViT
(non-causal, d = 16, 50 tokens); 8 sequences, one feature seed. It prints seconds, the circuit's multiply-add
rate against a 2048^2 float32 matmul on the same core at the same moment (the floor), the peak memory, and the
cost per (head, sequence, seed) that the specs' budgets use. Times are the process's CPU seconds (one torch
thread), which other processes on a shared machine disturb less than wall time; the load average is recorded
beside them, and a row measured while it exceeded one says "machine loaded: figure not the code's".
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

CASES = {"minilm": (197, 32, False), "smollm2": (197, 64, True), "vit": (50, 16, False)}
RESULTS = Path(__file__).resolve().parent / "results" / "measured.json"


def matmul_rate() -> float:
    """The best of three 2048^2 float32 matmuls, in flops per CPU second."""
    a = torch.randn(2048, 2048)
    a @ a
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        a @ a
        best = min(best, time.process_time() - start)
    return 2 * 2048**3 / best


def one_case(args) -> dict:
    name, m_values = args
    torch.set_num_threads(1)
    from astrostats.runner import flops_per_sequence
    from astrostats.studies import measured
    from astrostats.targets.synthetic import synthetic_head

    n_tokens, d, causal = CASES[name]
    head = synthetic_head(n_sequences=8, n_tokens=n_tokens, d_head=d, logit_scale="typical", seed=0, causal=causal)
    floor = matmul_rate()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()[0]
    start, wall = time.process_time(), time.perf_counter()
    measured.measured_table([head], m_values, 1, 0, memory_mb=1024)
    seconds, wall = time.process_time() - start, time.perf_counter() - wall
    load = max(load, os.getloadavg()[0])
    work = 8 * flops_per_sequence(n_tokens, d, d, max(m_values))
    return {"case": name, "n_tokens": n_tokens, "d": d, "causal": causal, "m": max(m_values), "seconds": seconds,
            "wall_seconds": wall, "load_average_max": load,
            "note": "machine loaded: figure not the code's" if load > 1 else "quiet machine",
            "seconds_per_head_sequence_seed": seconds / 8, "gflops": work / seconds / 1e9,
            "matmul_gflops": floor / 1e9, "ratio_to_matmul_floor": floor / (work / seconds),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_mb_at_start": before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        with ProcessPoolExecutor(1) as pool:  # a fresh process per case: its own peak memory
            rows.append(pool.submit(one_case, (case, tuple(args.m))).result())
        print(json.dumps(rows[-1]))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
