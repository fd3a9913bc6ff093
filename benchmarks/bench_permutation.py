"""Benchmark: 10,000 sign-flip permutations of 10,000 paired differences, against scipy.stats.permutation_test.

Prints a table and writes JSON (``--out``, default benchmarks/results/permutation.json). The p-values of the
two implementations are compared within their Monte-Carlo error (z = difference / combined SE).

    python benchmarks/bench_permutation.py [--n 10000] [--resamples 10000] [--repeats 3] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy
import torch
from scipy import stats

from astrostats.stats import paired_permutation_test


def best_time(function, repeats: int) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="paired differences")
    parser.add_argument("--resamples", type=int, default=10_000, help="sign-flip permutations")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats for astrostats (best is kept)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "permutation.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    differences = rng.normal(0.01, 1.0, args.n)  # a small true shift: p is neither 0 nor 1

    ours_time, ours = best_time(lambda: paired_permutation_test(differences, n_resamples=args.resamples, seed=1),
                                args.repeats)
    scipy_time, reference = best_time(lambda: stats.permutation_test(
        (differences,), lambda x, axis: x.mean(axis=axis), permutation_type="samples",
        n_resamples=args.resamples, vectorized=True, random_state=2), 1)
    p_ours, se_ours = float(ours["p_value"].item()), float(ours["p_value_mc_se"].item())
    p_scipy = float(reference.pvalue)
    se_scipy = math.sqrt(p_scipy * (1 - p_scipy) / args.resamples)
    z = (p_ours - p_scipy) / math.hypot(se_ours, se_scipy)
    result = {"n_differences": args.n, "n_resamples": args.resamples,
              "astrostats_seconds": ours_time, "scipy_seconds": scipy_time, "speedup": scipy_time / ours_time,
              "p_astrostats": p_ours, "p_astrostats_mc_se": se_ours, "p_scipy": p_scipy, "p_scipy_mc_se": se_scipy,
              "z_difference": z, "agree_within_mc_error": bool(abs(z) < 3),
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "numpy": np.__version__, "scipy": scipy.__version__,
              "python": platform.python_version(), "machine": platform.machine()}
    print(f"{'implementation':<32}{'seconds':>10}{'p-value':>10}{'MC s.e.':>10}")
    print(f"{'astrostats (byte-table sign flip)':<32}{ours_time:>10.3f}{p_ours:>10.4f}{se_ours:>10.4f}")
    print(f"{'scipy.stats.permutation_test':<32}{scipy_time:>10.3f}{p_scipy:>10.4f}{se_scipy:>10.4f}")
    print(f"speed-up x{result['speedup']:.0f}; p difference z = {z:+.2f} ({'agree' if abs(z) < 3 else 'DISAGREE'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
