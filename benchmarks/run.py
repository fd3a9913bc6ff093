"""Run the benchmarks, print one table per benchmark, and write JSON to benchmarks/results/.

    python benchmarks/run.py                 # everything (about an hour on 2 idle cores: full_run and sweep
                                             # run the full profile; each takes 20 minutes)
    python benchmarks/run.py --quick         # smaller grids
    python benchmarks/run.py --only circuit  # any bench_<name>.py that defines run(quick)
    python benchmarks/run.py --threads 2     # torch threads for the in-process measurements (default 1)

Numbers depend on the machine and on what else runs on it: the JSON records the CPU count, torch's
thread count, the load average, the share of the cores other work kept busy in the second before it started
(flagged "machine busy: these times are not the code's" above 10 %) and a one-thread matmul's GFLOP/s at the
start and end, so a reader can judge how quiet and how fast the machine was.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"


def discover() -> dict[str, str]:
    """Benchmark name -> module: every benchmarks/bench_<name>.py that defines run(quick) -> {part: rows}."""
    sys.path.insert(0, str(HERE))
    found = {}
    for path in sorted(HERE.glob("bench_*.py")):
        if "\ndef run(" in path.read_text():
            found[path.stem.removeprefix("bench_")] = path.stem
    return found


MATMUL_SIZE = 2048


def best_time(function, repeats: int = 5) -> float:
    """The fastest of ``repeats`` timed calls, after one warm-up call (allocations, kernel selection)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """GFLOP/s of a float32 size x size matmul on torch's current threads: the reference every speed is set against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2.0 * size**3 / best_time(lambda: a @ b, repeats) / 1e9


def reference_matmul_gflops() -> float:
    """:func:`matmul_gflops` on one thread: the machine's speed at the time, recorded at the start and end of
    every benchmark. The load average misses a host that shares its cores with other virtual machines (the same
    code ran 30 % slower at load 1 when this rate fell by a fifth), so run times are compared only where this
    rate is the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return matmul_gflops()
    finally:
        torch.set_num_threads(threads)


BUSY_LIMIT = 0.10  # a share of the cores busy with other work (or stolen by the host) beyond which times are not the code's


def busy_share(seconds: float = 1.0) -> float | None:
    """The share of the machine's CPU time spent on other work (user, system, interrupts) or stolen by the host
    over ``seconds`` of waiting (Linux /proc/stat): what the load average, a minute's decaying mean, misses
    right after a run. None where /proc/stat cannot be read."""
    def sample():
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])  # guest time is already in user time
    try:
        busy_before, total_before = sample()
        time.sleep(seconds)
        busy_after, total_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (busy_after - busy_before) / max(1, total_after - total_before)


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()), "busy_share": busy_share(),
            "reference_matmul_gflops": reference_matmul_gflops()}


def machine_line(started: dict, record: dict) -> str:
    """What the reader needs to judge the numbers: the machine's speed and how busy it was before the benchmark."""
    busy = started.get("busy_share")
    verdict = ("busy share unknown" if busy is None else
               f"{100 * busy:.0f} % of the cores busy with other work before it"
               + ("; machine busy: these times are not the code's" if busy > BUSY_LIMIT else ""))
    return (f"machine: one-thread float32 matmul {started['reference_matmul_gflops']:.0f} GFLOP/s at the start, "
            f"{record['reference_matmul_gflops_end']:.0f} at the end; {verdict}; load average "
            f"{started['load_average'][0]:.1f} -> {record['load_average_end'][0]:.1f} (compare times only between "
            f"runs at the same matmul rate)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchmarks = discover()
    parser.add_argument("--only", choices=sorted(benchmarks), action="append")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in this process (default 1: per-core numbers, robust on a busy machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    RESULTS_DIR.mkdir(exist_ok=True)
    for name in args.only or list(benchmarks):
        started = machine()
        begin = time.perf_counter()
        results = importlib.import_module(benchmarks[name]).run(quick=args.quick)
        record = {"benchmark": name, "quick": args.quick, "machine": started,
                  "load_average_end": list(os.getloadavg()), "seconds": time.perf_counter() - begin,
                  "reference_matmul_gflops_end": reference_matmul_gflops(), "results": results}
        path = RESULTS_DIR / f"{name}{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(record, indent=2, default=str))
        for part, rows in results.items():
            print(f"\n== {name}: {part} ==")
            with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
                print(pd.DataFrame(rows).drop(columns="benchmark").to_string(index=False))
        print("\n" + machine_line(started, record))
        print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
