"""Benchmark: the overfitting analysis end to end, and the training cost of every fitted control.

Runs a profile of analyses/overfitting.toml (default quick; target: quick < 3 min, full < 30 min on 2 cores),
timing each stage (circuits on every split, fitting the controls, the paired comparisons), and prints the
training cost per control and m (seconds, epochs, status) from the run's own training table. Writes JSON
(``--out``, default benchmarks/results/overfitting_<profile>.json).

``--refits N``: the cost of the refit ladder (astrostats.controls.refit) instead: the amendment-v2 fitted nulls of
the synthetic head fitted without refits (refit_attempts = 0) and with the spec's ladder, interleaved N times, in
CPU seconds of this process (resource.getrusage; less disturbed by other load than wall time), best of N, with the
load average beside them and how many fits the ladder refit and rescued.

    python benchmarks/bench_overfitting.py [--profile quick|smoke|full] [--out PATH] [--refits N]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import time
from pathlib import Path

import pandas as pd
import torch

from astrostats.controls.comparisons import comparisons_table
from astrostats.controls.experiment import run_controls
from astrostats.controls.refit import RefitLadder
from astrostats.spec import ANALYSES_DIR, load_spec
from astrostats.studies import overfitting
from astrostats.studies.base import RunContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "full"])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--refits", type=int, default=0, help="time the refit ladder, interleaved N times")
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"overfitting_{args.profile}.json"
    spec = load_spec(ANALYSES_DIR / "overfitting.toml", args.profile)
    parameters = spec.bind(overfitting.Parameters)
    if args.refits:
        return refit_cost(spec, parameters, args.refits, out.with_name(f"overfitting_refits_{args.profile}.json"))
    registered = overfitting.check_preregistration(spec, parameters)
    context = RunContext(Path("."), progress=False)
    stages = {}
    start = time.perf_counter()
    splits = overfitting.synthetic_splits(parameters, spec.seed)
    circuits = overfitting.circuit_measurements(splits, parameters, spec.seed, context)
    stages["circuits_all_splits"] = time.perf_counter() - start
    plan = overfitting.control_plan(parameters, spec.seed)
    start = time.perf_counter()
    controls, training, _, _ = run_controls(splits, plan, progress=False)
    stages["fitted_controls"] = time.perf_counter() - start
    measurements = pd.concat([circuits, controls], ignore_index=True)
    start = time.perf_counter()
    tests = comparisons_table(measurements, overfitting.families(parameters, registered),
                              alpha=float(registered["alpha"]), correction=registered["correction"],
                              n_resamples=parameters.n_resamples, seed=spec.seed)
    stages["comparisons"] = time.perf_counter() - start
    stages["total"] = sum(stages.values())
    cost = (training.groupby(["circuit", "m"], as_index=False)
            .agg(seconds=("seconds", "mean"), epochs=("epochs", "mean"), n_fitted=("n_fitted", "first"),
                 statuses=("status", lambda s: ",".join(sorted(set(s))))))
    print(f"overfitting analysis, profile {args.profile}: {len(tests)} comparisons, {len(training)} fits")
    for stage, seconds in stages.items():
        print(f"  {stage:<22s} {seconds:8.1f} s")
    print("training cost per control (mean over seeds):")
    print(cost.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "profile": args.profile, "stages_seconds": stages, "training_cost": cost.to_dict(orient="records"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count()}}, indent=2, default=str))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def refit_cost(spec, parameters, repeats: int, out: Path) -> None:
    """CPU seconds of the v2 fitted nulls without and with the refit ladder, interleaved, best of ``repeats``."""
    splits = overfitting.synthetic_splits(parameters, spec.seed)
    plan = dataclasses.replace(overfitting.control_plan(parameters, spec.seed), capacity_null=False,
                               control_seeds=1)  # the v1 controls are not refit: keep their cost out of both
    plans = {"no_refits": dataclasses.replace(plan, refit=RefitLadder(0, 1, 1)), "ladder": plan}
    cpu = {name: [] for name in plans}
    loads, refits = [], None
    for _ in range(repeats):
        for name, candidate in plans.items():
            loads.append(os.getloadavg()[0])
            start = _cpu_seconds()
            _, _, _, table = run_controls(splits, candidate, progress=False)
            cpu[name].append(_cpu_seconds() - start)
            refits = table if name == "ladder" else refits
    fits = refits.groupby(["circuit", "m", "seed"])
    result = {"profile": spec.profile, "repeats": repeats, "cpu_seconds": cpu,
              "best_cpu_seconds": {name: min(values) for name, values in cpu.items()},
              "extra_cpu_seconds": min(cpu["ladder"]) - min(cpu["no_refits"]),
              "load_average_1min": loads, "fits": len(fits), "refit": int((fits["attempt"].max() > 1).sum()),
              "rescued": int(refits[refits["used"] & refits["learned"] & (refits["attempt"] > 1)].shape[0]),
              "steps_used": refits.loc[refits["used"], "step"].value_counts().to_dict()}
    print(json.dumps(result, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
