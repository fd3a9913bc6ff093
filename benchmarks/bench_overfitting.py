"""Benchmark: the overfitting analysis end to end, and the training cost of every fitted control.

Runs a profile of analyses/overfitting.toml (default quick; target: quick < 3 min, full < 30 min on 2 cores),
timing each stage (circuits on every split, fitting the controls, the paired comparisons), and prints the
training cost per control and m (seconds, epochs, status) from the run's own training table. Writes JSON
(``--out``, default benchmarks/results/overfitting_<profile>.json).

    python benchmarks/bench_overfitting.py [--profile quick|smoke|full] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from astrostats.controls.comparisons import comparisons_table
from astrostats.controls.experiment import ControlPlan, run_controls
from astrostats.spec import ANALYSES_DIR, load_spec
from astrostats.studies import overfitting
from astrostats.studies.base import RunContext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "full"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"overfitting_{args.profile}.json"
    spec = load_spec(ANALYSES_DIR / "overfitting.toml", args.profile)
    parameters = spec.bind(overfitting.Parameters)
    registered = overfitting.check_preregistration(spec, parameters)
    context = RunContext(Path("."), progress=False)
    stages = {}
    start = time.perf_counter()
    splits = overfitting.synthetic_splits(parameters, spec.seed)
    circuits = overfitting.circuit_measurements(splits, parameters, spec.seed, context)
    stages["circuits_all_splits"] = time.perf_counter() - start
    plan = ControlPlan(m=parameters.m, n_seeds=parameters.n_seeds, controls=parameters.controls,
                       capacity_null=parameters.capacity_null, budget=parameters.budget,
                       budget_tolerance=parameters.budget_tolerance, base_seed=spec.seed)
    start = time.perf_counter()
    controls, training, _ = run_controls(splits, plan, progress=False)
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


if __name__ == "__main__":
    main()
