"""Wall time and peak memory of a scaling sweep: in process, and on 1 and 2 local worker processes.

Each configuration runs in a fresh process (so its peak resident memory is its own); cluster start-up is
timed apart from the sweep. Efficiency = (1-worker time / 2-worker time) / 2. The sweep is the scaling
study's shape: one synthetic typical head (8 sequences, N = 197, d = 64), m from 16 to 4096, positive and
trigonometric features, the astrocyte and no-astrocyte circuits and the uniform baseline.
"""
from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor


def sweep_and_targets(quick: bool):
    from astrostats.runner import Sweep
    from astrostats.targets.synthetic import synthetic_head

    m = (16, 64, 256, 1024) if quick else (16, 64, 256, 1024, 4096)
    sweep = Sweep(m=m, n_seeds=4 if quick else 8, feature_maps=("positive", "trigonometric"),
                  circuits=("astrocyte", "no_astrocyte", "uniform"))
    targets = [synthetic_head(n_sequences=8, n_tokens=197, d_head=64, logit_scale=scale, seed=0)
               for scale in ("diffuse", "typical")]
    return targets, sweep


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
        run_sweep(targets, sweep, progress=False, executor=executor)  # warm-up: imports in workers
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
