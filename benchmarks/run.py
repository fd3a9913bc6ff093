"""Run the benchmarks, print one table per benchmark, and write JSON to benchmarks/results/.

    python benchmarks/run.py                 # everything (about an hour on 2 idle cores: full_run and sweep
                                             # run the full profile; each takes 20 minutes)
    python benchmarks/run.py --quick         # smaller grids
    python benchmarks/run.py --only circuit  # any bench_<name>.py that defines run(quick)
    python benchmarks/run.py --threads 2     # torch threads for the in-process measurements (default 1)

Numbers depend on the machine and on what else runs on it: the JSON records the CPU count, torch's
thread count and the load average at the start and end, so a reader can judge how quiet the machine was.
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


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg())}


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
                  "results": results}
        path = RESULTS_DIR / f"{name}{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(record, indent=2, default=str))
        for part, rows in results.items():
            print(f"\n== {name}: {part} ==")
            with pd.option_context("display.width", 160, "display.max_columns", 20, "display.precision", 4):
                print(pd.DataFrame(rows).drop(columns="benchmark").to_string(index=False))
        print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
