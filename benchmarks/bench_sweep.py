"""Wall time and peak memory of the scaling analysis's sweep: in process, and on 1 and 2 local worker processes.

The sweep is exactly the one ``python -m astrostats.analyze scaling`` runs (analyses/scaling.toml): the full
profile by default, the quick one with ``--quick``. Each configuration runs in a fresh process (so its peak
resident memory is its own); cluster start-up and a one-task warm-up (imports in the workers) are timed apart
from the sweep. Efficiency = (1-worker time / 2-worker time) / 2.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor


def sweep_and_targets(quick: bool):
    from astrostats.spec import resolve_spec_argument
    from astrostats.studies import scaling

    spec = resolve_spec_argument("scaling", "quick" if quick else "full")
    parameters = spec.bind(scaling.Parameters)
    return scaling.targets(spec, parameters), parameters.sweep(spec.seed)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _one_configuration(workers: int | None, quick: bool) -> dict:
    from astrostats.execution import make_executor
    from astrostats.runner import run_sweep

    targets, sweep = sweep_and_targets(quick)
    start = time.perf_counter()
    with make_executor(workers=workers) as executor:
        started = time.perf_counter()
        warm_up = dataclasses.replace(sweep, m=sweep.m[:1], n_seeds=1, feature_maps=("positive",),
                                      circuits=("astrocyte",))
        run_sweep(targets[:1], warm_up, progress=False, executor=executor)  # imports in the workers
        begin = time.perf_counter()
        table = run_sweep(targets, sweep, progress=False, executor=executor)
        wall = time.perf_counter() - begin
        worker_peaks = []
        if workers:
            worker_peaks = list(executor._backend.client.run(_peak_mb).values())
    return {"benchmark": "sweep", "executor": "in process" if workers is None else f"{workers} workers",
            "workers": workers or 0, "torch_threads_per_process": 1 if workers else _torch_threads(),
            "rows": len(table), "startup_seconds": started - start,
            "wall_seconds": wall, "driver_peak_mb": _peak_mb(),
            "worker_peak_mb": max(worker_peaks) if worker_peaks else None}


def run(quick: bool = False) -> dict[str, list[dict]]:
    rows = []
    context = multiprocessing.get_context("spawn")
    for workers in (None, 1, 2):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            rows.append(pool.submit(_one_configuration, workers, quick).result())
    by_workers = {row["workers"]: row["wall_seconds"] for row in rows}
    speedup = by_workers[1] / by_workers[2]
    rows.append({"benchmark": "sweep_scaling", "speedup_1_to_2_workers": speedup, "efficiency": speedup / 2})
    return {"sweep": rows}
