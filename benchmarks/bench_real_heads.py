"""Speed and memory of the real-Transformer analyses (issue 6).

    python benchmarks/bench_real_heads.py            # quick profiles of fig3_language and fig3_vision
    python benchmarks/bench_real_heads.py --memory   # also: one MiniLM-sized layer (12 heads, 197 tokens) at m = 10^5

Prints where the time goes (model loading and each analysis, per model) and the peak resident memory.
The issue's target: both quick profiles together in under 3 minutes on 2 cores, model loading included.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from astrostats.spec import load_spec
from astrostats.studies import real_heads
from astrostats.studies.base import RunContext
from astrostats.targets.swap import CircuitSetting, circuit_heads

ANALYSES = Path(__file__).resolve().parent.parent / "analyses"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quick_profiles(profile: str) -> pd.DataFrame:
    frames = []
    for name in ("fig3_language", "fig3_vision"):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            tables = real_heads.run(load_spec(ANALYSES / f"{name}.toml", profile), RunContext(Path(out), progress=False))
        timings = tables[f"{name}_timings"]
        frames.append(timings)
        frames.append(pd.DataFrame([{"analysis": name, "target": "all", "step": "total",
                                     "seconds": time.perf_counter() - start}]))
    return pd.concat(frames, ignore_index=True)


def memory_check(m: int = 100_000, memory_mb: int = 1024) -> dict:
    """Peak memory of m hidden units on a 12-head layer, in a fresh process (this one has loaded models)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_memory_check_here, m, memory_mb).result()


def _memory_check_here(m: int, memory_mb: int) -> dict:
    """ru_maxrss would report the parent's peak (Linux keeps it across fork and exec): read the kernel's
    per-process high-water mark instead, reset once the inputs exist."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 12, 197, 32, generator=generator) * 0.3 for _ in range(3))
    before = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    start = time.perf_counter()
    circuit_heads(0, q, k, v, CircuitSetting(m=m, seed=0, memory_mb=memory_mb))
    return {"m": m, "heads": 12, "tokens": 197, "seconds": time.perf_counter() - start,
            "peak_rss_mb": _status_mb("VmHWM"), "rss_before_mb": before}


def _status_mb(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB


def run(quick: bool = False) -> dict[str, list[dict]]:
    """For benchmarks/run.py: the quick profiles' timings (smoke with --quick) and the m = 10^5 memory check."""
    timings = quick_profiles("smoke" if quick else "quick").assign(benchmark="profile_timings")
    return {"profile_timings": timings.to_dict("records"),
            "memory_m1e5": [{"benchmark": "memory_m1e5", **memory_check()}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    timings = quick_profiles(args.profile)
    print(timings.to_string(index=False))
    print(f"both analyses: {timings[timings['step'] == 'total']['seconds'].sum():.1f} s; peak RSS {peak_mb():.0f} MB")
    if args.memory:
        print(memory_check())


if __name__ == "__main__":
    main()
